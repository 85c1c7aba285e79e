"""Built-in offline sets: first-use build, manifest and shipped-checksum verification,
determinism, independence of OpenCV, CLI."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap

import pytest

from gluefactory.datasets import get_dataset
from gluefactory.datasets.sources import (
    builtin,
    builtin_eth3d,
    builtin_hpatches,
    builtin_posed,
)
from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.errors import DataError

pytest.importorskip("skimage.data")


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def shipped_subset(name: str, prefixes: tuple[str, ...]) -> dict:
    """The shipped checksums of the files of set ``name`` under ``prefixes``."""
    files = builtin.read_checksums()["sets"][name]["files"]
    return {k: v for k, v in files.items() if k.startswith(prefixes)}


SUBSETS = {
    "hpatches": ("v_rocket/", "i_camera/"),
    "posed": ("middlebury_motorcycle/",),
    "eth3d": ("room_0/",),
}


@pytest.fixture
def small(monkeypatch):
    """The real generators, restricted to a few sequences / one small room, checked
    against the shipped checksums of those files."""
    calls = []
    builders = {
        "hpatches": functools.partial(
            builtin_hpatches.build, only=["v_rocket", "i_camera"]
        ),
        "posed": functools.partial(
            builtin_posed.build, rooms=0
        ),  # Middlebury only: the rooms are tested in test_posed_images
        "eth3d": functools.partial(builtin_eth3d.build, rooms=1),  # per-room streams
    }
    version = {
        "hpatches": builtin_hpatches.VERSION,
        "posed": builtin_posed.VERSION,
        "eth3d": builtin_eth3d.VERSION,
    }

    def fake(name):
        def build(dest, seed):
            calls.append(name)
            return builders[name](dest, seed)

        return build, version[name]

    monkeypatch.setattr(builtin, "_builder", fake)
    monkeypatch.setattr(
        builtin,
        "expected_files",
        lambda name, version, seed: shipped_subset(name, SUBSETS[name]),
    )
    return calls


def test_first_use_builds_then_verifies(data_root, small):
    stale = data_root / "builtin" / ".hpatches.x1y2.tmp"  # left by a killed build
    (stale / "v_x").mkdir(parents=True)
    ds = get_dataset("hpatches")({"data_dir": "builtin/hpatches"})
    assert ds.sequences == ["i_camera", "v_rocket"] and len(ds) == 10
    folder = data_root / "builtin" / "hpatches"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["version"] == builtin_hpatches.VERSION and manifest["seed"] == 0
    assert "opencv" in manifest["homography_convention"]
    assert set(manifest["files"]) == {
        f"{s}/{f}"
        for s in ("i_camera", "v_rocket")
        for f in [f"{i}.ppm" for i in range(1, 7)] + [f"H_1_{k}" for k in range(2, 7)]
    }
    assert builtin.ensure_builtin("hpatches") == folder
    assert small == ["hpatches"]  # built once
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_posed_set_through_the_dataset(data_root, small):
    ds = get_dataset("posed_images")({"root": "builtin/posed"})
    assert ds.scenes == ["middlebury_motorcycle"] and len(ds) == 1
    manifest = builtin.read_manifest(data_root / "builtin" / "posed")
    assert manifest["pairs"] == {"middlebury_motorcycle": 1}
    item = ds[0]
    assert item["view0"]["depth"].shape == (500, 741)
    assert float(item["T_0to1"].t[0]) == pytest.approx(-0.193001)


def test_tampered_or_missing_files_are_reported(data_root, small):
    folder = builtin.ensure_builtin("hpatches")
    path = folder / "v_rocket" / "H_1_3"
    text = path.read_text()
    path.write_text(text.replace("e", "E", 1))  # same size, other bytes
    with pytest.raises(DataError) as e:
        get_dataset("hpatches")({"data_dir": "builtin/hpatches"})
    msg = str(e.value)
    assert "v_rocket/H_1_3" in msg and "modified" in msg
    assert (
        "python -m gluefactory.datasets.sources.builtin build --force hpatches" in msg
    )
    (folder / "i_camera" / "2.ppm").unlink()
    with pytest.raises(DataError, match="i_camera/2.ppm is missing"):
        builtin.ensure_builtin("hpatches")
    builtin.build("hpatches", force=True)
    builtin.ensure_builtin("hpatches")
    (folder / "manifest.json").unlink()
    with pytest.raises(DataError, match="has no manifest.json"):
        builtin.ensure_builtin("hpatches")


def test_new_generator_version_rebuilds(data_root, small, monkeypatch):
    builtin.ensure_builtin("hpatches")
    builtin.ensure_builtin("hpatches")
    assert small == ["hpatches"]  # current: not rebuilt
    monkeypatch.setattr(
        builtin,
        "_builder",
        lambda name: (functools.partial(builtin_hpatches.build, only=["i_camera"]), 99),
    )
    monkeypatch.setattr(
        builtin, "expected_files", lambda *a: shipped_subset("hpatches", ("i_camera/",))
    )
    folder = builtin.ensure_builtin("hpatches")
    assert builtin.read_manifest(folder)["version"] == 99
    assert sorted(p.name for p in folder.iterdir()) == ["i_camera", "manifest.json"]


def test_deterministic(tmp_path):
    """Same seed, same bytes; a subset equals the same sequences of a larger build."""
    a, b = tmp_path / "a", tmp_path / "b"
    builtin_hpatches.build(a, 0, only=["v_brick", "i_coins"])
    builtin_hpatches.build(b, 0, only=["i_coins"])
    fa = builtin.write_manifest(a, {})["files"]
    fb = builtin.write_manifest(b, {})["files"]
    assert {k: v for k, v in fa.items() if k.startswith("i_coins")} == fb
    builtin_hpatches.build(tmp_path / "c", 1, only=["i_coins"])
    fc = builtin.write_manifest(tmp_path / "c", {})["files"]
    assert fc != fb  # the seed matters


def test_cli(data_root, small, capsys):
    assert builtin.main(["build", "hpatches"]) == 0
    assert "hpatches:" in capsys.readouterr().out
    assert builtin.main(["verify", "hpatches"]) == 0
    (data_root / "builtin" / "hpatches" / "v_rocket" / "1.ppm").write_bytes(b"x")
    with pytest.raises(SystemExit) as e:
        main_wrapper(builtin.main)(["verify", "hpatches"])
    assert e.value.code == 2
    assert "v_rocket/1.ppm has 1 bytes" in capsys.readouterr().err
    assert builtin.main(["build", "--force", "hpatches"]) == 0
    assert builtin.main(["verify", "hpatches"]) == 0
    with pytest.raises(SystemExit):
        builtin.main(["build", "nosuchset"])


@pytest.mark.slow
def test_full_builtin_sets(tmp_path, monkeypatch):
    """The real sets: sizes, pair counts, and the subset property of each generator."""
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path / "data"))
    hp = builtin.ensure_builtin("hpatches")  # checked against the shipped checksums
    shipped = builtin.read_checksums()["sets"]
    assert builtin.read_manifest(hp)["files"] == shipped["hpatches"]["files"]
    ds = get_dataset("hpatches")({"data_dir": "builtin/hpatches"})
    assert len(ds.sequences) == 10 and len(ds) == 50
    assert sum(s.startswith("i_") for s in ds.sequences) == 4
    small = tmp_path / "hp_small"
    builtin_hpatches.build(small, builtin.SEED, only=["v_coffee"])
    full = builtin.read_manifest(hp)["files"]
    sub = builtin.write_manifest(small, {})["files"]
    assert all(full[k] == v for k, v in sub.items())
    posed = builtin.ensure_builtin("posed")
    assert builtin.read_manifest(posed)["files"] == shipped["posed"]["files"]
    pairs = builtin.read_manifest(posed)["pairs"]
    assert 20 <= sum(pairs.values()) <= 40 and len(pairs) == 6
    ds = get_dataset("posed_images")({"root": "builtin/posed"})
    assert len(ds) == sum(pairs.values())
    one = tmp_path / "posed_one_room"
    builtin_posed.build(one, builtin.SEED, rooms=1)  # deterministic, per-room streams
    full = builtin.read_manifest(posed)["files"]
    sub = builtin.write_manifest(one, {})["files"]
    assert all(full[k] == v for k, v in sub.items())


def test_shipped_checksums_describe_both_sets():
    data = builtin.read_checksums()
    hp, posed = data["sets"]["hpatches"], data["sets"]["posed"]
    assert hp["version"] == builtin_hpatches.VERSION and hp["seed"] == builtin.SEED
    assert posed["version"] == builtin_posed.VERSION and posed["seed"] == builtin.SEED
    seqs = [f"v_{n}" for n in builtin_hpatches.VIEWPOINT] + [
        f"i_{n}" for n in builtin_hpatches.ILLUMINATION
    ]
    assert set(hp["files"]) == {
        f"{s}/{f}"
        for s in seqs
        for f in [f"{i}.ppm" for i in range(1, 7)] + [f"H_1_{k}" for k in range(2, 7)]
    }
    scenes = {p.split("/")[0] for p in posed["files"]}
    assert scenes == {"middlebury_motorcycle"} | {
        f"room_{k}" for k in range(builtin_posed.NUM_ROOMS)
    }
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in hp["files"].values())
    assert {"numpy", "h5py", "hdf5"} <= set(data["libraries"])
    assert data["sources"] == builtin.source_digests()  # photos decode alike here


def test_other_bytes_than_shipped_are_refused(data_root, small, monkeypatch):
    """A generator whose output differs (another library's rounding) installs nothing
    and names the file and the libraries that differ."""
    real = builtin_hpatches.encode_ppm

    def off_by_one(image):
        if image.shape[1] == 480:  # i_camera, not v_rocket
            image = image.copy()
            image[0, 0, 0] ^= 1
        return real(image)

    monkeypatch.setattr(builtin_hpatches, "encode_ppm", off_by_one)
    monkeypatch.setattr(
        builtin, "library_versions", lambda: {"numpy": "0.0", "python": "3"}
    )
    with pytest.raises(DataError) as e:
        builtin.ensure_builtin("hpatches")
    msg = str(e.value)
    assert "6 of 22 files differ" in msg and "i_camera/1.ppm has other bytes" in msg
    assert "not the one gluefactory ships" in msg and "numpy 0.0" in msg
    assert "source photographs decode to the same pixels" in msg
    assert not (data_root / "builtin" / "hpatches").exists()
    assert [p.name for p in (data_root / "builtin").iterdir()] == []


def test_a_manifest_of_other_files_is_refused(data_root, small):
    """A built set whose manifest (and files) are not the shipped ones fails to load."""
    folder = builtin.ensure_builtin("hpatches")
    path = folder / "v_rocket" / "H_1_2"
    path.write_text(path.read_text().replace("e", "E", 1))
    manifest = builtin.read_manifest(folder)
    builtin.write_manifest(folder, {k: v for k, v in manifest.items() if k != "files"})
    with pytest.raises(DataError, match="v_rocket/H_1_2 has other bytes"):
        builtin.ensure_builtin("hpatches")


def test_verify_names_a_set_of_an_older_generator(data_root, small):
    folder = builtin.ensure_builtin("hpatches")
    manifest = builtin.read_manifest(folder)
    builtin.write_manifest(
        folder, {k: v for k, v in manifest.items() if k != "files"} | {"version": 1}
    )
    with pytest.raises(DataError, match="made by version 1 of its generator"):
        builtin.main(["verify", "hpatches"])


def test_an_unshipped_generator_version_is_an_error():
    with pytest.raises(DataError, match="regenerate them: python -m"):
        builtin.expected_files("hpatches", builtin_hpatches.VERSION + 1, builtin.SEED)
    assert builtin.expected_files("hpatches", builtin_hpatches.VERSION, 7) is None


def test_generation_uses_no_opencv(tmp_path):
    """With ``import cv2`` made impossible, the generators write the shipped bytes: no
    OpenCV version can change the sets."""
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["cv2"] = None  # any import of OpenCV fails
        from pathlib import Path
        from gluefactory.datasets.sources import builtin, builtin_hpatches, builtin_posed
        dest = Path({str(tmp_path)!r})
        builtin_hpatches.build(dest / "hp", 0, only=["i_coins", "v_gravel"])
        builtin_posed.build(dest / "posed", 0, rooms=0)
        for name, folder in (("hpatches", "hp"), ("posed", "posed")):
            expected = builtin.read_checksums()["sets"][name]["files"]
            for rel, entry in builtin.file_entries(dest / folder).items():
                assert expected[rel] == entry, rel
        print("cv2" in sys.modules and sys.modules["cv2"] is None)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "True"


def test_checksums_command_records_what_the_generators_make(
    tmp_path, small, monkeypatch
):
    target = tmp_path / "checksums.json"
    monkeypatch.setattr(builtin, "CHECKSUMS", target)
    assert builtin.main(["checksums"]) == 0
    data = builtin.read_checksums(target)
    for name, prefixes in SUBSETS.items():
        assert data["sets"][name]["files"] == shipped_subset(name, prefixes)
    shipped = builtin.read_checksums()
    assert data["sources"] == shipped["sources"]
    assert data["libraries"] == builtin.library_versions()


def test_checksums_of_some_sets_keep_the_others(tmp_path, small):
    path = tmp_path / "checksums.json"
    path.write_text(builtin.CHECKSUMS.read_text())
    before = builtin.read_checksums(path)["sets"]
    data = builtin.write_checksums(path, names=("posed",))  # Middlebury only (small)
    assert small == ["posed"]
    assert data["sets"]["hpatches"] == before["hpatches"]
    assert data["sets"]["eth3d"] == before["eth3d"]
    assert set(data["sets"]["posed"]["files"]) == set(
        shipped_subset("posed", SUBSETS["posed"])
    )
