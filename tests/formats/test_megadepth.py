"""MegaDepth scene_info: writer and reader held together, usable views checked."""

from __future__ import annotations

import numpy as np
import pytest

from gluefactory.datasets.sources.megadepth_convert import convert
from gluefactory.formats import megadepth, posed
from gluefactory.formats.records import Scene, View
from gluefactory.utils.errors import DataError

K = np.array([[500.0, 0, 320.5], [0, 500, 240.5], [0, 0, 1]])


def _views(n=3):
    out = []
    for i in range(n):
        a = 0.2 * i
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        out.append(View.from_Rt(f"{i}.jpg", K * (1 + i / 10), R, [i, 0, 0], None))
    return out


def test_scene_info_round_trip(tmp_path):
    views = _views()
    images = [megadepth.image_path("s", v.name) for v in views]
    depths = [megadepth.depth_path("s", v.name) for v in views[:2]] + [None]
    ov = np.array([[1, 0.5, -1], [0.4, 1, -1], [-1, -1, -1.0]])
    path = megadepth.write_scene_info(tmp_path / "s.npz", images, depths, views, ov)
    info = megadepth.read_scene_info(path)
    assert list(info.valid) == [0, 1]  # no depth: not usable
    assert info.image_paths[1] == "Undistorted_SfM/s/images/1.jpg"
    assert info.depth_paths[0] == "depth_undistorted/s/0.h5"
    np.testing.assert_array_equal(info.overlap_matrix, ov)
    for i in (0, 1):
        v = info.view(i)
        assert v.name == views[i].name and v.size is None
        np.testing.assert_array_equal(v.K, views[i].K)
        np.testing.assert_array_equal(v.T_w2cam, views[i].T_w2cam)
    with pytest.raises(ValueError, match="3 views need 3 paths"):
        megadepth.write_scene_info(tmp_path / "x.npz", images[:2], depths, views, ov)


def test_usable_poses_are_checked_others_not(tmp_path):
    views = _views(2)
    bad = View(views[1].name, views[1].K, np.diag([2.0, 2, 2, 1]), None)
    path = tmp_path / "s.npz"
    np.savez(
        path, image_paths=np.array(["a/b/0.jpg", "a/b/1.jpg"], dtype=object),
        depth_paths=np.array(["d/0.h5", None], dtype=object),
        intrinsics=np.stack([views[0].K, bad.K]),
        poses=np.stack([views[0].T_w2cam, bad.T_w2cam]), overlap_matrix=np.eye(2),
    )  # fmt: skip
    assert list(megadepth.read_scene_info(path).valid) == [0]  # 1 unusable: unchecked
    np.savez(
        path, image_paths=np.array(["a/b/0.jpg", None], dtype=object),
        depth_paths=np.array([None, None], dtype=object),
        intrinsics=np.array([None, None], dtype=object),
        poses=np.array([None, None], dtype=object), overlap_matrix=-np.ones((2, 2)),
    )  # fmt: skip
    assert len(megadepth.read_scene_info(path).valid) == 0  # nothing usable: fine
    np.savez(
        path, image_paths=np.array(["a/b/0.jpg", "a/b/1.jpg"], dtype=object),
        depth_paths=np.array(["d/0.h5", "d/1.h5"], dtype=object),
        intrinsics=np.stack([views[0].K, bad.K]),
        poses=np.stack([views[0].T_w2cam, bad.T_w2cam]), overlap_matrix=np.eye(2),
    )  # fmt: skip
    with pytest.raises(
        DataError, match=r"s.npz: image 1 \(1.jpg\): R is not a rotation"
    ):
        megadepth.read_scene_info(path)


def test_incomplete_scene_info(tmp_path):
    np.savez(tmp_path / "a.npz", image_paths=np.array(["x"], dtype=object))
    with pytest.raises(DataError, match="Corrupt or incomplete scene_info"):
        megadepth.read_scene_info(tmp_path / "a.npz")
    with pytest.raises(DataError, match="not found"):
        megadepth.read_scene_info(tmp_path / "b.npz")
    views = _views(2)
    np.savez(
        tmp_path / "c.npz", image_paths=np.array(["a", "b"], dtype=object),
        depth_paths=np.array(["a", "b"], dtype=object),
        intrinsics=np.stack([v.K for v in views]),
        poses=np.stack([v.T_w2cam for v in views]), overlap_matrix=np.eye(3),
    )  # fmt: skip
    with pytest.raises(DataError, match="overlap_matrix is not 2 x 2"):
        megadepth.read_scene_info(tmp_path / "c.npz")


def test_converter_output_reads_back(tmp_path):
    """posed text -> MegaDepth through both format modules: same views, same depth."""
    rng = np.random.default_rng(0)
    w, h = 64, 48
    Kc = np.array([[60.0, 0, 32], [0, 60, 24], [0, 0, 1]])
    views = {
        f"{i}.jpg": View.from_Rt(f"{i}.jpg", Kc, np.eye(3), [0.1 * i, 0, 0], (w, h))
        for i in range(2)
    }
    depths = {n: rng.uniform(4.5, 4.6, (h, w)).astype(np.float32) for n in views}
    posed.write_scene(
        tmp_path / "src" / "s", Scene("s", views, [("0.jpg", "1.jpg")]), depths
    )
    for n in views:
        (tmp_path / "src" / "s" / posed.IMAGES / n).write_bytes(b"jpeg bytes")
    convert(tmp_path / "src", tmp_path / "dst")
    info = megadepth.read_scene_info(tmp_path / "dst" / megadepth.INFO_DIR / "s.npz")
    assert list(info.valid) == [0, 1]
    for i, (name, v) in enumerate(views.items()):
        np.testing.assert_array_equal(info.view(i).T_w2cam, v.T_w2cam)
        np.testing.assert_array_equal(info.view(i).K, v.K)
        d = megadepth.read_depth(tmp_path / "dst" / info.depth_paths[i], (w, h))
        np.testing.assert_array_equal(d, depths[name])
    assert info.overlap_matrix[0, 1] > 0.8 and info.overlap_matrix[1, 0] > 0.8
