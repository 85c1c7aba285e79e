"""The README's main command, end to end: real photographs, official weights, pose vs GT."""

import pytest

from gluefactory import demo


@pytest.mark.slow
def test_demo_on_middlebury(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    results = demo.main(
        ["--conf", "aliked+lightglue-official", "model.extractor.max_num_keypoints=512"]
    )
    assert results["num_keypoints"] == 512
    assert results["num_matches"] > 200
    assert results["pose_error_deg"] < 2.0
    assert results["epi_prec@1e-3"] > 0.8
    assert (
        tmp_path / "demo" / "aliked+lightglue-official" / "matches.png"
    ).stat().st_size > 10_000


def test_demo_rejects_unknown_config(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--conf", "no-such-config"])
    assert "No config named" in capsys.readouterr().err
