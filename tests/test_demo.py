"""The README's main command: config checks up front, output consistent with the figure."""

from __future__ import annotations

import re

import pytest
import torch

from gluefactory import demo
from gluefactory.utils.cli import merge_cli_conf
from gluefactory.utils.conf import compose
from gluefactory.utils.errors import ConfigError, InputError
from gluefactory.visualization import viz2d

FAST = ["preprocessing.resize=256", "model.extractor.max_num_keypoints=256"]


def demo_conf(*dotlist: str, conf: str = "sift+NN"):
    """The config the demo CLI would build (SIFT + NN: no weights, fast on CPU)."""
    return merge_cli_conf(demo.DEFAULT_CONF, compose(conf, list(dotlist)), demo.PROG)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """The Middlebury pair written as image files, as a user would pass with --images."""
    cv2 = pytest.importorskip("cv2")
    skd = pytest.importorskip("skimage.data")
    left, right, _ = skd.stereo_motorcycle()
    folder = tmp_path_factory.mktemp("photos")
    paths = [folder / "left.png", folder / "right.png"]
    for path, img in zip(paths, (left, right)):
        cv2.imwrite(str(path), img[..., ::-1])
    return paths


@pytest.fixture
def saved_figures(monkeypatch):
    """Capture the figures the demo saves (inspected before they are closed)."""
    figures = []
    save = viz2d.save

    def capture(fig, path):
        # one MatchLines collection: a colour per match, one alpha, widths
        lines = [a for a in fig.artists if isinstance(a, viz2d.MatchLines)]
        n = [len(c.get_segments()) for c in lines]
        figures.append(
            {
                "title": fig._suptitle.get_text() if fig._suptitle else "",
                "axes_titles": [ax.get_title() for ax in fig.axes],
                "colors": [
                    tuple(c.get_colors()[i % len(c.get_colors())])
                    for c, k in zip(lines, n)
                    for i in range(k)
                ],
                "alphas": {c.get_alpha() for c in lines},
                "widths": {float(w) for c in lines for w in c.get_linewidths()},
            }
        )
        return save(fig, path)

    monkeypatch.setattr(demo.viz2d, "save", capture)
    return figures


def rgba(name: str):
    from matplotlib.colors import to_rgba

    return to_rgba(name, alpha=0.5)


@pytest.mark.parametrize(
    "override, needle",
    [
        ("model.matcher=null", "model.matcher.name"),
        ("model.matcher.name=null", "model.matcher.name"),
        ("model.extractor=null", "model.extractor.name"),
        ("model.name=null", "model.name"),
        ("model.extractor=extractors.aliked", "model.extractor must be a section"),
        ("estimator=null", "it needs estimator.name"),
    ],
)
def test_missing_component_is_found_before_reading_images(tmp_path, override, needle):
    conf = demo_conf(override)
    with pytest.raises(ConfigError, match=re.escape(needle)):
        demo.run(conf, [tmp_path / "missing0.png", tmp_path / "missing1.png"], tmp_path)


def test_estimator_typo_is_an_error_without_ground_truth(tmp_path):
    conf = demo_conf("estimator.ransac_thr=2")
    with pytest.raises(ConfigError, match=r"(?s)in estimator: .*'ransac_thr'"):
        demo.run(conf, [tmp_path / "missing0.png", tmp_path / "missing1.png"], tmp_path)


def test_without_ground_truth_lines_are_neutral(tmp_path, photo_files, saved_figures):
    torch.set_grad_enabled(True)
    results = demo.run(demo_conf(*FAST), photo_files, tmp_path)
    assert torch.is_grad_enabled()  # run() must not switch autograd off for the process
    assert "pose_error_deg" not in results
    n0, n1, nm = (
        results[k] for k in ("num_keypoints0", "num_keypoints1", "num_matches")
    )
    assert 0 < nm <= min(n0, n1) <= 256
    (fig,) = saved_figures
    assert fig["axes_titles"] == [
        f"image 0: {n0} keypoints",
        f"image 1: {n1} keypoints",
    ]
    assert f"{nm} matches" in fig["title"] and "no ground truth" in fig["title"]
    assert len(fig["colors"]) == nm
    assert set(fig["colors"]) == {rgba(viz2d.NEUTRAL)}
    assert fig["alphas"] == {0.5} and max(fig["widths"]) <= 0.8
    assert (tmp_path / "matches.png").stat().st_size > 10_000


def test_with_ground_truth_lines_say_right_or_wrong(tmp_path, saved_figures):
    torch.set_grad_enabled(False)
    try:
        results = demo.run(demo_conf(*FAST), None, tmp_path)
        assert not torch.is_grad_enabled()  # unchanged, whichever it was
    finally:
        torch.set_grad_enabled(True)
    (fig,) = saved_figures
    correct = fig["colors"].count(rgba(viz2d.CORRECT))
    assert correct + fig["colors"].count(rgba(viz2d.WRONG)) == results["num_matches"]
    assert f"{correct} correct" in fig["title"]
    assert correct / results["num_matches"] == pytest.approx(results["epi_prec@1e-3"])
    assert results["pose_error_deg"] < 5


@pytest.mark.parametrize(
    "key, value, text",
    [
        ("time_ms (extract+match, 2 images)", 20400.0, "20.4 s"),
        ("time_ms (extract+match, 2 images)", 1642.25, "1642.2 ms"),
        ("time_ms (extract+match, 2 images)", 3.0, "3.0 ms"),
        ("pose_error_deg", 0.42637, "0.4264"),
        ("pose_error_deg", 20400.0, "20400"),
        ("pose_error_deg", 1.5e-5, "0.000015"),
        ("pose_error_deg", float("inf"), "inf"),
        ("num_matches", 367, "367"),
    ],
)
def test_values_print_without_scientific_notation(key, value, text):
    assert demo.format_value(key, value) == text


def test_demo_rejects_unknown_config(capsys):
    with pytest.raises(SystemExit):
        demo.main(["--conf", "no-such-config"])
    assert "No config named" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_on_middlebury(tmp_path, monkeypatch, capsys):
    """End to end as in the README (official weights), and the printed table."""
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    results = demo.main(
        ["--conf", "aliked+lightglue-official", "model.extractor.max_num_keypoints=512"]
    )
    assert results["num_keypoints0"] == results["num_keypoints1"] == 512
    assert results["num_matches"] > 200
    assert results["pose_error_deg"] < 2.0
    assert results["epi_prec@1e-3"] > 0.8
    assert (
        tmp_path / "demo" / "aliked+lightglue-official" / "matches.png"
    ).stat().st_size > 10_000
    out = capsys.readouterr().out
    assert re.search(r"^num_keypoints0 +512$", out, re.M)
    assert re.search(r"^num_keypoints1 +512$", out, re.M)
    assert re.search(r"^time \(extract\+match, 2 images\) +\d+\.\d (ms|s)$", out, re.M)
    values = [line.split("  ")[-1].strip() for line in out.strip().splitlines()]
    assert not [v for v in values if re.fullmatch(r"[\d.]+e[+-]\d+.*", v)]


def test_an_image_too_small_for_the_extractor_is_named(tmp_path, photo_files):
    cv2 = pytest.importorskip("cv2")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.imread(str(photo_files[0]))[:24, :40])
    conf = demo_conf("preprocessing.resize=null", conf="xfeat+NN")  # XFeat: >= 32 px
    with pytest.raises(InputError) as e:
        demo.run(conf, [photo_files[1], small], tmp_path)
    assert str(e.value).startswith(
        f"{small}: after preprocessing the image is 40x24 px"
    )
    assert "32 px XFeat needs" in str(e.value)


def test_an_image_paired_with_itself_is_refused(tmp_path, photo_files):
    same = photo_files[0].parent / "." / photo_files[0].name  # another spelling
    with pytest.raises(InputError, match="are the same file"):
        demo.run(demo_conf(*FAST), [photo_files[0], same], tmp_path)
