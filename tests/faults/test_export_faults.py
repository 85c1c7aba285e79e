"""Feature exports and downloads under a full disk: one ``error:`` line naming the file,
exit 2, nothing partial left, the previous file intact, and a rerun completes."""

from __future__ import annotations

import json
import zipfile

import cv2
import pytest
from fault_injection import disk_full_at, disk_full_in_h5, disk_full_in_open, leftovers
from test_download import HP, data_root, hpatches_zip, server  # noqa: F401 (fixtures)
from test_download import leftovers as download_leftovers

from gluefactory.datasets.sources import download
from gluefactory.formats.features import is_complete
from gluefactory.scripts import export_local_features, export_megadepth
from gluefactory.utils import http
from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.fs import sha256_of

FEATURES = [
    "--method", "xfeat", "--images", "photos", "model.max_num_keypoints=128",
    "data.preprocessing.resize=160",
]  # fmt: skip
FEATURES_FILE = "exports/photos-r160_XFeat-k128.h5"


def _one_error_line(capsys, *names: str) -> None:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and "no space left on the device" in lines[0], err
    assert all(n in lines[0] for n in names), lines[0]


@pytest.fixture
def photos(tmp_path, monkeypatch):
    skd = pytest.importorskip("skimage.data")
    (tmp_path / "photos").mkdir()
    for name in ("coffee", "astronaut", "chelsea"):
        img = getattr(skd, name)()
        cv2.imwrite(str(tmp_path / "photos" / f"{name}.png"), img[..., ::-1])
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path))
    return tmp_path


def test_disk_full_in_export_local_features_keeps_the_previous_file(
    photos, monkeypatch, capsys
):
    export_local_features.main(FEATURES)
    path = photos / FEATURES_FILE
    digest = sha256_of(path)
    again = [*FEATURES, "--overwrite", "model.detection_threshold=0.1"]
    refused = disk_full_in_h5(monkeypatch, path.name, after=20_000)  # mid-file
    with pytest.raises(SystemExit) as e:
        export_local_features.main(again)
    assert e.value.code == 2 and refused
    _one_error_line(capsys, str(path))
    assert leftovers(photos) == [] and sha256_of(path) == digest
    monkeypatch.undo()
    monkeypatch.setenv("GLUEFACTORY_DATA", str(photos))
    assert export_local_features.main(again)["images"] == 3
    assert sha256_of(path) != digest


@pytest.fixture
def megadepth(tmp_path, monkeypatch, motorcycle_pair):
    import posed_motorcycle

    from gluefactory.datasets.sources.megadepth_convert import convert

    src = tmp_path / "posed"
    posed_motorcycle.write_posed_motorcycle(src, motorcycle_pair)
    convert(src, tmp_path / "data" / "megadepth", stride=8)
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


MEGADEPTH = [
    "--method", "xfeat", "data.data_dir=megadepth", "data.preprocessing.resize=160",
    "model.max_num_keypoints=128",
]  # fmt: skip


@pytest.mark.parametrize("site", ["motorcycle.h5", "export.json"])
def test_disk_full_in_export_megadepth(site, megadepth, monkeypatch, capsys):
    if site.endswith(".h5"):
        refused = disk_full_in_h5(monkeypatch, site, after=5_000)
    else:
        refused = disk_full_at(monkeypatch, site)
    with pytest.raises(SystemExit) as e:
        export_megadepth.main(MEGADEPTH)
    assert e.value.code == 2 and refused
    folder = megadepth / "exports" / "megadepth-undist-depth-r160_XFeat-k128"
    _one_error_line(capsys, str(folder / site))
    assert leftovers(megadepth) == []
    assert not (folder / "export.json").exists()  # it is written last
    # the scene written before export.json failed is complete and skipped by the rerun
    assert (folder / "motorcycle.h5").exists() == (site == "export.json")
    monkeypatch.undo()
    monkeypatch.setenv("GLUEFACTORY_DATA", str(megadepth))
    assert export_megadepth.main(MEGADEPTH)["images"] == (
        0 if site == "export.json" else 2
    )
    with open(folder / "export.json") as f:
        ehash = json.load(f)["hash"]
    assert is_complete(folder / "motorcycle.h5", ehash)


def test_disk_full_during_a_download_removes_the_part(server, data_root, capsys):  # noqa: F811
    server.files[HP] = hpatches_zip(stored=True)
    cli = main_wrapper(download.main)
    with pytest.MonkeyPatch.context() as mp:
        refused = disk_full_in_open(mp, http, "*.part", after=4096)
        with pytest.raises(SystemExit) as e:
            cli(["hpatches"])
    assert e.value.code == 2 and refused
    part = data_root / "hpatches-sequences-release.zip.part"
    _one_error_line(capsys, str(part))
    assert download_leftovers(data_root) == []
    assert cli(["hpatches"]) == 0  # space freed: the rerun downloads it whole
    assert (data_root / "hpatches-sequences-release" / "v_graffiti" / "6.ppm").is_file()


def test_disk_full_while_unpacking_keeps_the_archive(server, data_root, capsys):  # noqa: F811
    server.files[HP] = hpatches_zip(stored=True)
    cli = main_wrapper(download.main)
    with pytest.MonkeyPatch.context() as mp:
        refused = disk_full_in_open(mp, zipfile, "*.ppm", after=10_000)
        with pytest.raises(SystemExit) as e:
            cli(["hpatches"])
    assert e.value.code == 2 and refused
    err = capsys.readouterr().err
    assert "Traceback" not in err and "free space" in err
    assert not (data_root / "hpatches-sequences-release").exists()
    assert [p.name for p in data_root.iterdir()] == ["hpatches-sequences-release.zip"]
    assert cli(["hpatches"]) == 0  # from the kept archive: no second download
    assert len(server.requests) == 1
