"""Relative-pose estimators: opencv, poselib, pycolmap (4.x API).

Synthetic scene at MegaDepth-1500-like resolution (1600 x 1200, f = 1200 px, two
different cameras), 200 matches, 30% outliers, 0.5 px noise in both views.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gluefactory.eval.metrics import pose_error
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.robust_estimators import load_estimator
from gluefactory.robust_estimators.relative_pose import opencv as cv_module
from gluefactory.robust_estimators.relative_pose import poselib as pl_module
from gluefactory.utils.conf import ConfigError

ESTIMATORS = [
    {"name": "opencv"},  # plain RANSAC, the upstream default
    {"name": "opencv", "method": "usac_accurate"},
    {"name": "poselib"},
    {"name": "pycolmap"},
]


def _id(conf):
    return "-".join(str(v) for v in conf.values())


def _load(conf, **kw):
    if conf["name"] == "pycolmap":
        pytest.importorskip("pycolmap")
    return load_estimator("relative_pose", {**conf, **kw})


def _error(out, pb) -> float:
    return pose_error(pb["T_0to1"], out["M_0to1"].R, out["M_0to1"].t)


@pytest.mark.parametrize("conf", ESTIMATORS, ids=_id)
def test_accuracy_with_outliers_and_noise(conf, make_pose_problem):
    est = _load(conf, ransac_th=1.0)
    for seed in range(5):
        pb = make_pose_problem(seed, outliers=0.3, noise=0.5)
        out = est(pb)
        assert out["success"]
        assert isinstance(out["M_0to1"], Pose) and out["M_0to1"].shape == ()
        assert _error(out, pb) < 0.5, seed
        inl = out["inliers"].numpy()
        assert out["inliers"].dtype == torch.bool and inl.shape == (200,)
        # nearly all reported inliers are true inliers, and most true inliers are found
        assert pb["inl"][inl].mean() > 0.95 and inl[pb["inl"]].mean() > 0.8


@pytest.mark.parametrize("conf", ESTIMATORS, ids=_id)
def test_exact_correspondences(conf, make_pose_problem):
    pb = make_pose_problem(3, outliers=0.3, noise=0.0)
    out = _load(conf, ransac_th=0.5)(pb)
    # float32 poses: arccos((tr R^T R_gt - 1) / 2) resolves ~0.02 deg at best
    assert out["success"] and _error(out, pb) < 0.05
    assert np.linalg.norm(out["M_0to1"].t.numpy()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("conf", ESTIMATORS, ids=_id)
def test_known_rotation_and_pure_translation(conf, make_pose_problem):
    """A stereo pair (R = I, t along x) and a 25 degree rotation about the optical axis.

    Exact matches, no outliers.
    """
    pb = make_pose_problem(4, outliers=0.0, noise=0.0, R=np.eye(3), t=(1.0, 0.0, 0.0))
    out = _load(conf)(pb)
    R, t = out["M_0to1"].numpy()
    np.testing.assert_allclose(R, np.eye(3), atol=1e-4)
    np.testing.assert_allclose(np.abs(t), [1, 0, 0], atol=1e-4)
    c, s = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
    Rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    pb = make_pose_problem(5, outliers=0.0, noise=0.0, R=Rz, t=(0.3, -1.0, 0.1))
    out = _load(conf)(pb)
    np.testing.assert_allclose(out["M_0to1"].R.double().numpy(), Rz, atol=1e-4)
    assert _error(out, pb) < 0.05


def _degenerate_inputs():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 1200, (50, 2))
    x = np.linspace(0, 1500, 50)
    line = np.stack([x, 0.5 * x + 3], -1)
    nan = pts.copy()
    nan[7, 0] = np.nan
    return {
        "empty": (pts[:0], pts[:0]),
        "four": (pts[:4], pts[:4] + 1),
        "collinear0": (line, pts),
        "collinear1": (pts, line),
        "nan": (nan, pts + 1),
        "inf": (pts + 1, np.where(np.arange(50)[:, None] == 3, -np.inf, pts)),
    }


DEGENERATE = _degenerate_inputs()
ALL_OPENCV = [{"name": "opencv", "method": m} for m in cv_module.METHODS]


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("conf", ALL_OPENCV + ESTIMATORS[2:], ids=_id)
def test_degenerate_input_fails_cleanly(conf, case, make_pose_problem):
    cams = make_pose_problem(0)
    p0, p1 = DEGENERATE[case]
    data = {
        "m_kpts0": torch.tensor(p0).float(),
        "m_kpts1": torch.tensor(p1).float(),
        "camera0": cams["camera0"],
        "camera1": cams["camera1"],
    }
    out = _load(conf)(data)
    assert out["success"] is False
    R, t = out["M_0to1"].numpy()
    np.testing.assert_array_equal(R, np.eye(3))
    np.testing.assert_array_equal(t, np.zeros(3))
    assert out["inliers"].shape == (len(p0),) and not out["inliers"].any()


def test_batch_of_one_camera_accepted(make_pose_problem):
    pb = make_pose_problem(0)
    data = dict(
        pb, camera0=pb["camera0"].unsqueeze(0), camera1=pb["camera1"].unsqueeze(0)
    )
    data["m_kpts0"], data["m_kpts1"] = pb["m_kpts0"][None], pb["m_kpts1"][None]
    assert _load({"name": "poselib"}, ransac_th=1.0)(data)["success"]


def test_camera_must_be_a_camera(make_pose_problem):
    pb = make_pose_problem(0)
    data = dict(pb, camera0=torch.eye(3))
    with pytest.raises(TypeError, match="camera0"):
        _load({"name": "poselib"})(data)
    with pytest.raises(KeyError, match="camera1"):
        _load({"name": "opencv"})({k: v for k, v in pb.items() if k != "camera1"})


# --------------------------------------------------------------------------------------
# Every option reaches the library


def test_opencv_forwards_every_option(monkeypatch, make_pose_problem):
    calls = {}
    real = cv2.findEssentialMat

    def spy(x0, x1, K, **kw):
        calls["find"] = kw
        return real(x0, x1, K, **kw)

    monkeypatch.setattr(cv_module.cv2, "findEssentialMat", spy)
    monkeypatch.setattr(
        cv_module.cv2, "setRNGSeed", lambda s: calls.setdefault("seed", s)
    )
    conf = {
        "name": "opencv",
        "ransac_th": 2.0,
        "method": "usac_magsac",
        "confidence": 0.999,
        "max_iters": 777,
        "seed": 3,
    }
    est = load_estimator("relative_pose", conf)
    assert set(est.conf.keys()) == set(conf)
    pb = make_pose_problem(0)
    est(pb)
    f = np.concatenate([pb["camera0"].f.numpy(), pb["camera1"].f.numpy()]).mean()
    assert calls["find"]["method"] == cv2.USAC_MAGSAC
    assert calls["find"]["prob"] == 0.999
    assert calls["find"]["maxIters"] == 777
    assert calls["find"]["threshold"] == pytest.approx(2.0 / f)
    assert calls["seed"] == 3


def test_poselib_forwards_every_option(monkeypatch, make_pose_problem):
    calls = {}
    real = pl_module.poselib.estimate_relative_pose

    def spy(p0, p1, cam0, cam1, ransac_opt, bundle_opt):
        calls.update(
            ransac=dict(ransac_opt), bundle=dict(bundle_opt), cam0=cam0, cam1=cam1
        )
        return real(p0, p1, cam0, cam1, ransac_opt, bundle_opt)

    monkeypatch.setattr(pl_module.poselib, "estimate_relative_pose", spy)
    default = load_estimator("relative_pose", {"name": "poselib"}).conf
    ransac = {k: v for k, v in default.ransac_options.items()}
    ransac.update(max_iterations=4321, min_iterations=12, seed=9, success_prob=0.95)
    bundle = {k: v for k, v in default.bundle_options.items()}
    bundle.update(max_iterations=7, loss_type="TRUNCATED", loss_scale=0.01)
    conf = {
        "name": "poselib",
        "ransac_th": 1.5,
        "ransac_options": ransac,
        "bundle_options": bundle,
    }
    pb = make_pose_problem(0)
    load_estimator("relative_pose", conf)(pb)
    assert calls["ransac"] == {**ransac, "max_epipolar_error": 1.5}
    assert calls["bundle"] == bundle
    K1 = pb["camera1"].K.double().numpy()
    assert calls["cam1"]["model"] == "PINHOLE"
    assert (calls["cam1"]["width"], calls["cam1"]["height"]) == (1600, 1200)
    np.testing.assert_allclose(
        calls["cam1"]["params"], [K1[0, 0], K1[1, 1], K1[0, 2], K1[1, 2]]
    )


def test_pycolmap_forwards_every_option(monkeypatch, make_pose_problem):
    pycolmap = pytest.importorskip("pycolmap")
    from gluefactory.robust_estimators.relative_pose import pycolmap as pc_module

    calls = {}
    real = pycolmap.estimate_essential_matrix

    def spy(p0, p1, cam0, cam1, options):
        calls["options"], calls["cam0"] = options, cam0
        return real(p0, p1, cam0, cam1, options)

    monkeypatch.setattr(pycolmap, "estimate_essential_matrix", spy)
    changed = {
        "min_inlier_ratio": 0.05,
        "confidence": 0.95,
        "dyn_num_trials_multiplier": 2.0,
        "min_num_trials": 50,
        "max_num_trials": 5000,
        "random_seed": 11,
        "num_threads": 2,
    }
    est = load_estimator("relative_pose", {"name": "pycolmap"})
    assert set(est.conf.ransac_options) == set(changed)
    conf = {"name": "pycolmap", "ransac_th": 1.25, "ransac_options": changed}
    pb = make_pose_problem(0)
    out = pc_module.PycolmapRelativePose(conf)(pb)
    assert out["success"]
    opts = calls["options"]
    for key, value in changed.items():
        assert getattr(opts, key) == pytest.approx(value), key
    assert opts.max_error == 1.25
    assert calls["cam0"].model == pycolmap.CameraModelId.PINHOLE
    assert (calls["cam0"].width, calls["cam0"].height) == (1600, 1200)


def test_pycolmap_is_deterministic_with_a_seed(make_pose_problem):
    pytest.importorskip("pycolmap")
    pb = make_pose_problem(1)
    a = _load({"name": "pycolmap"}, ransac_th=1.0)(pb)
    b = _load({"name": "pycolmap"}, ransac_th=1.0)(pb)
    assert torch.equal(a["inliers"], b["inliers"])
    torch.testing.assert_close(a["M_0to1"].R, b["M_0to1"].R)


def test_changed_threshold_changes_inliers(make_pose_problem):
    pb = make_pose_problem(2)
    for name in ("opencv", "poselib"):
        a = _load({"name": name}, ransac_th=2.0)(pb)
        b = _load({"name": name}, ransac_th=0.2)(pb)
        assert a["inliers"].sum() > b["inliers"].sum(), name


@pytest.mark.parametrize(
    "conf, match",
    [
        ({"name": "opencv", "method": "rho"}, "rho"),
        ({"name": "opencv", "prob": 0.9}, "prob"),
        (
            {"name": "poselib", "ransac_options": {"max_epipolar_error": 1.0}},
            "max_epipolar_error",
        ),
        ({"name": "pycolmap", "ransac_options": {"max_error": 1.0}}, "max_error"),
        ({"name": "pycolmap", "options": {}}, "options"),
    ],
)
def test_bad_config_is_rejected(conf, match):
    if conf["name"] == "pycolmap":
        pytest.importorskip("pycolmap")
    with pytest.raises(ConfigError, match=match):
        load_estimator("relative_pose", conf)


def test_opencv_uses_each_camera(make_pose_problem):
    """Swapping the two (different) cameras must degrade the estimate."""
    pb = make_pose_problem(6, outliers=0.0, noise=0.0, f1=900.0)
    good = _load({"name": "opencv"}, ransac_th=0.5)(pb)
    swapped = _load({"name": "opencv"}, ransac_th=0.5)(
        dict(pb, camera0=pb["camera1"], camera1=pb["camera0"])
    )
    assert _error(good, pb) < 0.05
    assert not swapped["success"] or _error(swapped, pb) > 0.5


def test_empty_matches_fail_without_calling_the_library():
    data = {"m_kpts0": torch.zeros(0, 2), "m_kpts1": torch.zeros(0, 2)}
    cam = Camera.from_calibration_matrix(torch.eye(3), torch.tensor([10.0, 10.0]))
    out = _load({"name": "poselib"})(dict(data, camera0=cam, camera1=cam))
    assert out["success"] is False
