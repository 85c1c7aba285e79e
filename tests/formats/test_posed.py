"""Posed text: writer and reader held together, and the files others write read back."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gluefactory.datasets.sources import builtin_posed
from gluefactory.formats import posed
from gluefactory.formats.depth import read_depth
from gluefactory.formats.records import Scene, View
from gluefactory.utils.errors import DataError

TESTS = Path(__file__).resolve().parents[1]


def _rot(a, b):
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    Ry = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
    Rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return Rx @ Ry


def _scene(n=3, seed=0):
    rng = np.random.default_rng(seed)
    views = {}
    for i in range(n):
        K = np.array([[rng.uniform(300, 600), 0, 40.5], [0, 480.25, 30.5], [0, 0, 1]])
        R, t = _rot(*rng.uniform(-1, 1, 2)), rng.normal(size=3)
        views[f"v{i}.jpg"] = View.from_Rt(f"v{i}.jpg", K, R, t, (80, 60))
    return Scene("s", views, [("v0.jpg", "v1.jpg"), ("v2.jpg", "v0.jpg", "v1.jpg")])


def test_scene_round_trip(tmp_path):
    scene = _scene()
    depths = {
        n: np.full((60, 80), 2.5 + i, np.float32) for i, n in enumerate(scene.views)
    }
    posed.write_scene(tmp_path / "s", scene, depths)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "depths", "images", "pairs.txt", "views.txt"
    ]  # fmt: skip
    back = posed.read_scene(tmp_path / "s")
    assert back.name == "s" and back.groups == scene.groups
    assert list(back.views) == list(scene.views)  # file order
    for name, v in scene.views.items():
        w = back.views[name]
        assert w.size == v.size
        np.testing.assert_allclose(w.K, v.K, rtol=1e-11)
        np.testing.assert_allclose(w.T_w2cam, v.T_w2cam, rtol=1e-11, atol=1e-11)
        d = read_depth(tmp_path / "s" / posed.DEPTHS / posed.depth_name(name), v.size)
        np.testing.assert_array_equal(d, depths[name])
    # writing what was read gives the same bytes (12 significant digits are stable)
    posed.write_scene(tmp_path / "t", back)
    for f in (posed.VIEWS, posed.PAIRS):
        assert (tmp_path / "t" / f).read_bytes() == (tmp_path / "s" / f).read_bytes()


def test_views_file_rules(tmp_path):
    path = tmp_path / "views.txt"
    path.write_text(
        "# comment\n"
        "a.png 1 0 0 0 1 0 0 0 1 0 0 0 SIMPLE_PINHOLE 64 48 50 32 24\n"
        "b.png 1 0 0 0 1 0 0 0 1 1 0 0 OPENCV 64 48 50 51 32 24 0 0 0 0\n"
    )
    views = posed.read_views(path)
    np.testing.assert_array_equal(
        views["a.png"].K, [[50, 0, 32], [0, 50, 24], [0, 0, 1]]
    )
    assert views["b.png"].K[1, 1] == 51 and views["b.png"].t[0] == 1
    bad = {
        "a.png 1 0 0": r"expected 'name R\(9\) t\(3\)",
        "a.png 2 0 0 0 2 0 0 0 2 0 0 0 PINHOLE 64 48 50 50 32 24": "not a rotation",
        "a.png 1 0 0 0 1 0 0 0 1 0 0 0 OPENCV 64 48 50 50 32 24 .1 0 0 0": "distort",
        "a.png 1 0 0 0 1 0 0 0 1 0 0 0 FISHEYE 64 48 1 2 3": "unknown camera",
        "a.png 1 0 0 0 1 0 0 0 1 0 0 0 PINHOLE 64 48 50 50 32": "takes 4",
        "a.png 1 0 0 0 1 0 0 0 1 0 0 0 PINHOLE 64 48 50 x 32 24": "views.txt:1",
        "": "lists no image",
    }
    for line, message in bad.items():
        path.write_text(line + "\n")
        with pytest.raises(DataError, match=message):
            posed.read_views(path)
    line = "a.png 1 0 0 0 1 0 0 0 1 0 0 0 PINHOLE 64 48 50 50 32 24\n"
    path.write_text(line * 2)
    with pytest.raises(DataError, match="views.txt:2: image 'a.png' is listed twice"):
        posed.read_views(path)


def test_groups_must_name_known_views(tmp_path):
    views = _scene().views
    path = tmp_path / "pairs.txt"
    path.write_text("v0.jpg v1.jpg\n# c\nv0.jpg z.jpg\n")
    with pytest.raises(DataError, match=r"pairs.txt:3: image\(s\) \['z.jpg'\]"):
        posed.read_groups(path, views)
    path.write_text("v0.jpg v1.jpg\n\nv1.jpg v1.jpg\n")  # was accepted
    with pytest.raises(DataError) as e:
        posed.read_groups(path, views)
    assert str(e.value).startswith(
        f"{path}:3: image v1.jpg appears twice in the group v1.jpg v1.jpg"
    )
    path.write_text("v0.jpg\n")
    with pytest.raises(DataError, match="2 or more"):
        posed.read_groups(path)


def test_reads_the_builtin_middlebury_scene(tmp_path):
    """The generator writes through the format: its scene reads back exactly."""
    pytest.importorskip("skimage.data")
    builtin_posed.middlebury_scene(tmp_path / "m")
    scene = posed.read_scene(tmp_path / "m")
    assert scene.groups == [("left.png", "right.png")]
    left, right = scene.views["left.png"], scene.views["right.png"]
    m = builtin_posed.MIDDLEBURY
    np.testing.assert_allclose(right.t, [-m["B"], 0, 0])
    assert right.K[0, 2] - left.K[0, 2] == pytest.approx(m["doffs"])
    d = read_depth(tmp_path / "m" / posed.DEPTHS / "left.h5", left.size)
    assert 0.5 < np.median(d[d > 0]) < 5  # metres


def test_reads_the_motorcycle_fixture_of_the_tests(tmp_path, motorcycle_pair):
    spec = importlib.util.spec_from_file_location(
        "posed_motorcycle", TESTS / "datasets" / "posed_motorcycle.py"
    )
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    depth0 = helper.write_posed_motorcycle(tmp_path, motorcycle_pair)
    scene = posed.read_scene(tmp_path / "motorcycle")
    assert list(scene.views) == ["left.png", "right.png"]
    v = scene.views["left.png"]
    assert v.K[0, 0] == motorcycle_pair["f"]
    np.testing.assert_array_equal(
        read_depth(tmp_path / "motorcycle" / posed.DEPTHS / "left.h5", v.size),
        depth0,
    )
