"""ETH3D undistorted layout: writer and reader round trip, covisible pairs, and one
clear error per malformed file (naming file and line)."""

from __future__ import annotations

import numpy as np
import pytest

from gluefactory.formats import eth3d
from gluefactory.formats.depth import read_depth
from gluefactory.formats.records import Scene, View
from gluefactory.utils.errors import DataError


def _rot(a, b, c):
    ca, sa, cb, sb, cc, sc = (
        np.cos(a),
        np.sin(a),
        np.cos(b),
        np.sin(b),
        np.cos(c),
        np.sin(c),
    )
    Ry = np.array([[ca, 0, sa], [0, 1, 0], [-sa, 0, ca]])
    Rx = np.array([[1, 0, 0], [0, cb, -sb], [0, sb, cb]])
    Rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


def _scene(n=3, seed=0):
    rng = np.random.default_rng(seed)
    views = {}
    for i in range(n):
        K = np.array([[rng.uniform(300, 600), 0, 40.5], [0, 480.25, 30.5], [0, 0, 1]])
        views[f"DSC_{i}.JPG"] = View.from_Rt(
            f"DSC_{i}.JPG",
            K,
            _rot(*rng.uniform(-3, 3, 3)),
            rng.normal(size=3),
            (80, 60),
        )
    return Scene("s", views)


def _observations(ids_per_view):
    return {
        n: (np.arange(2 * len(ids)).reshape(-1, 2) * 0.5, np.asarray(ids))
        for n, ids in ids_per_view.items()
    }


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for angles in [*rng.uniform(-np.pi, np.pi, (50, 3)), (0, 0, 0), (np.pi, 0, 0)]:
        R = _rot(*angles)
        q = eth3d.rotmat_to_qvec(R)
        assert q[0] >= 0 and np.isclose(np.linalg.norm(q), 1)
        np.testing.assert_allclose(eth3d.qvec_to_rotmat(q), R, atol=1e-12)
    # COLMAP's order (w, x, y, z): a quarter turn about z
    np.testing.assert_allclose(
        eth3d.qvec_to_rotmat([np.sqrt(0.5), 0, 0, np.sqrt(0.5)]),
        [[0, -1, 0], [1, 0, 0], [0, 0, 1]],
        atol=1e-12,
    )


def test_scene_round_trip_and_pairs(tmp_path):
    scene = _scene()
    names = list(scene.views)
    obs = _observations(
        {
            names[0]: [1, 2, 3, 4, -1, -1],
            names[1]: [3, 4, 5, 2],
            names[2]: [],  # an image without observations: an empty line
        }
    )
    depths = {n: np.full((15, 20), 2.5 + i, np.float32) for i, n in enumerate(names)}
    folder = eth3d.write_scene(tmp_path / "s", scene, obs, depths)
    assert eth3d.missing_files(folder) == []
    back = eth3d.read_scene(folder, min_covisibility=3)
    assert list(back.views) == names
    assert back.groups == [(names[0], names[1])]  # 3 common points: 2, 3, 4
    assert eth3d.read_scene(folder, min_covisibility=4).groups == []
    for name, v in scene.views.items():
        w = back.views[name]
        assert w.size == v.size
        np.testing.assert_allclose(w.K, v.K, rtol=1e-11)
        np.testing.assert_allclose(w.T_w2cam, v.T_w2cam, atol=1e-10)
        d = read_depth(folder / eth3d.DEPTHS / eth3d.depth_name(name))
        np.testing.assert_array_equal(d, depths[name])
    _, points = eth3d.read_images(
        folder / eth3d.CALIBRATION / eth3d.IMAGES_TXT,
        eth3d.read_cameras(folder / eth3d.CALIBRATION / eth3d.CAMERAS),
    )
    assert points[names[0]].tolist() == [1, 2, 3, 4] and points[names[2]].size == 0
    # writing what was read gives the same bytes (12 significant digits are stable)
    eth3d.write_scene(tmp_path / "t", back, obs)
    for f in (eth3d.CAMERAS, eth3d.IMAGES_TXT):
        rel = f"{eth3d.CALIBRATION}/{f}"
        assert (tmp_path / "t" / rel).read_bytes() == (folder / rel).read_bytes()


def test_covisible_pairs_order_and_threshold():
    pts = {"b": np.array([1, 2, 3]), "a": np.array([2, 3, 9]), "c": np.array([3])}
    assert eth3d.covisible_pairs(pts, 2) == [("a", "b", 2)]
    assert eth3d.covisible_pairs(pts, 1) == [
        ("a", "b", 2),
        ("a", "c", 1),
        ("b", "c", 1),
    ]


CAMERAS = "# comment\n0 PINHOLE 80 60 500 500 40 30\n"
POSE = "1 1 0 0 0 0.1 0.2 0.3 0 dslr_images_undistorted/A.JPG"


@pytest.mark.parametrize(
    "cameras, images, match",
    [
        (
            "0 PINHOLE 80 60 500\n",
            f"{POSE}\n\n",
            r"cameras.txt:1: camera PINHOLE takes 4",
        ),
        (
            "0 OPENCV 80 60 500 500 40 30 0.1 0 0 0\n",
            f"{POSE}\n\n",
            r"cameras.txt:1: distorted",
        ),
        (
            "0 PINHOLE 80 x 500 500 40 30\n",
            f"{POSE}\n\n",
            r"cameras.txt:1: invalid literal",
        ),
        (
            CAMERAS + CAMERAS[10:],
            f"{POSE}\n\n",
            r"cameras.txt:3: camera 0 is listed twice",
        ),
        ("# nothing\n", f"{POSE}\n\n", r"cameras.txt lists no camera"),
        (CAMERAS, "1 0.9 0 0 0 0 0 0 0 A.JPG\n\n", r"images.txt:1: the quaternion"),
        (CAMERAS, "1 1 0 0 0 0 0 0 7 A.JPG\n\n", r"images.txt:1: camera 7 is not in"),
        (
            CAMERAS,
            "1 1 0 0 0 0 0 nan 0 A.JPG\n\n",
            r"images.txt:1: the pose has non-finite",
        ),
        (CAMERAS, "1 1 0 0 0 0 0 0 0\n\n", r"images.txt:1: expected 'IMAGE_ID"),
        (
            CAMERAS,
            f"{POSE}\n1.0 2.0\n",
            r"images.txt:2: observations are 'X Y POINT3D_ID'",
        ),
        (CAMERAS, f"{POSE}\n1.0 2.0 x\n", r"images.txt:2: invalid literal"),
        (
            CAMERAS,
            f"{POSE}\n\n{POSE}\n1 2 3\n",
            r"images.txt:3: image 'A.JPG' is listed twice",
        ),
        (CAMERAS, f"{POSE}\n\n{POSE}", r"images.txt:3: images.txt holds two lines"),
        (CAMERAS, "# only comments\n", r"images.txt lists no image"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, cameras, images, match):
    calib = tmp_path / "s" / eth3d.CALIBRATION
    calib.mkdir(parents=True)
    (calib / eth3d.CAMERAS).write_text(cameras)
    (calib / eth3d.IMAGES_TXT).write_text(images)
    with pytest.raises(DataError, match=match):
        eth3d.read_scene(tmp_path / "s")


def test_missing_calibration_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"calibration file not found: .*cameras.txt"):
        eth3d.read_scene(tmp_path)
    assert eth3d.missing_files(tmp_path) == [
        eth3d.IMAGES,
        eth3d.DEPTHS,
        f"{eth3d.CALIBRATION}/{eth3d.CAMERAS}",
        f"{eth3d.CALIBRATION}/{eth3d.IMAGES_TXT}",
    ]
