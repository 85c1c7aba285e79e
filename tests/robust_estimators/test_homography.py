"""Homography estimators: opencv, poselib, point_line (robust) and the weighted DLT.

point_line on points only; its lines are tested in test_point_line.py.

Accuracy is judged against the best achievable fit: with 0.5 px noise in both views and
140 inliers the least-squares fit on the *true* inliers (the "oracle") is itself 0.14 to
0.41 px off the ground truth in mean corner error (noise floor), so the robust
estimators must come within 0.1 px of the oracle on average; without noise they must be
exact.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from gluefactory.eval.metrics import homography_corner_error
from gluefactory.robust_estimators import load_estimator
from gluefactory.robust_estimators.homography import opencv as cv_module
from gluefactory.robust_estimators.homography import poselib as pl_module
from gluefactory.robust_estimators.homography.dlt import find_homography_dlt
from gluefactory.utils.conf import ConfigError

OPENCV_METHODS = list(cv_module.METHODS)
#: estimators with local optimisation / final polishing: at the noise floor
ACCURATE = [
    {"name": "poselib"},
    {"name": "opencv", "method": "usac_magsac"},
    {"name": "opencv", "method": "usac_accurate"},
    {"name": "opencv", "method": "usac"},
    {"name": "opencv", "method": "lmeds"},
    {"name": "point_line"},
]
#: plain RANSAC / RHO (no local optimisation): less accurate, see docs/metrics.md
PLAIN = [{"name": "opencv", "method": "ransac"}, {"name": "opencv", "method": "rho"}]
ALL = ACCURATE + PLAIN + [{"name": "dlt"}]


def _id(conf):
    return "-".join(str(v) for v in conf.values())


def oracle_error(pb) -> float:
    """Corner error of the least-squares fit on the true inliers (the noise floor)."""
    H, _ = cv2.findHomography(pb["p0"][pb["inl"]], pb["p1"][pb["inl"]], 0)
    return homography_corner_error(H, pb["H"], pb["size"])


@pytest.mark.parametrize("conf", ACCURATE, ids=_id)
def test_accuracy_at_noise_floor(conf, make_homography_problem):
    est = load_estimator("homography", {**conf, "ransac_th": 2.0})
    excess = []
    for seed in range(10):
        pb = make_homography_problem(seed, outliers=0.3, noise=0.5)
        out = est(pb)
        assert out["success"]
        err = homography_corner_error(out["M_0to1"], pb["H"], pb["size"])
        floor = oracle_error(pb)
        assert err < floor + 0.25, (seed, err, floor)
        excess.append(err - floor)
    assert np.mean(excess) < 0.1, excess


@pytest.mark.parametrize("conf", PLAIN, ids=_id)
def test_plain_ransac_accuracy(conf, make_homography_problem):
    est = load_estimator("homography", {**conf, "ransac_th": 2.0})
    errors = []
    for seed in range(10):
        pb = make_homography_problem(seed, outliers=0.3, noise=0.5)
        out = est(pb)
        assert out["success"]
        errors.append(homography_corner_error(out["M_0to1"], pb["H"], pb["size"]))
    assert max(errors) < 1.5 and np.mean(errors) < 0.7, errors


@pytest.mark.parametrize("conf", ACCURATE + PLAIN, ids=_id)
def test_exact_with_outliers(conf, make_homography_problem):
    """Noise-free matches with 30% outliers: the model is recovered to < 0.01 px."""
    pb = make_homography_problem(3, outliers=0.3, noise=0.0)
    out = load_estimator("homography", {**conf, "ransac_th": 1.0})(pb)
    assert out["success"]
    assert homography_corner_error(out["M_0to1"], pb["H"], pb["size"]) < 0.01
    inl = out["inliers"].numpy()
    assert inl.shape == pb["inl"].shape and out["inliers"].dtype == torch.bool
    assert (inl == pb["inl"]).mean() > 0.98  # an outlier can fall near H by chance


@pytest.mark.parametrize(
    "H",
    [np.eye(3), np.array([[1, 0, 12.5], [0, 1, -7.25], [0, 0, 1.0]])],
    ids=["identity", "translation"],
)
@pytest.mark.parametrize("conf", ALL, ids=_id)
def test_identity_and_translation(conf, H, make_homography_problem):
    pb = make_homography_problem(1, outliers=0.0, noise=0.0, H=H)
    out = load_estimator("homography", conf)(pb)
    assert out["success"]
    M = out["M_0to1"]
    assert (
        isinstance(M, torch.Tensor) and M.shape == (3, 3) and M.dtype == torch.float32
    )
    np.testing.assert_allclose(M.double().numpy(), H, atol=1e-3)
    assert out["inliers"].all()


def _degenerate_inputs():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, (50, 2))
    line = np.stack([np.linspace(0, 600, 50), 0.5 * np.linspace(0, 600, 50) + 3], -1)
    nan = pts.copy()
    nan[7, 1] = np.nan
    return {
        "empty": (pts[:0], pts[:0]),
        "three": (pts[:3], pts[:3] + 1),
        "collinear0": (line, pts),
        "collinear1": (pts, line),
        "collinear_both": (line, line * 1.1 + 2),
        "nan": (nan, pts + 1),
        "inf": (pts + 1, np.where(np.arange(50)[:, None] == 3, np.inf, pts)),
    }


DEGENERATE = _degenerate_inputs()


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize(
    "conf",
    [{"name": "poselib"}, {"name": "dlt"}, {"name": "point_line"}]
    + [{"name": "opencv", "method": m} for m in OPENCV_METHODS],
    ids=_id,
)
def test_degenerate_input_fails_cleanly(conf, case):
    p0, p1 = DEGENERATE[case]
    data = {"m_kpts0": torch.tensor(p0).float(), "m_kpts1": torch.tensor(p1).float()}
    out = load_estimator("homography", conf)(data)
    assert out["success"] is False
    assert torch.equal(out["M_0to1"], torch.eye(3))
    assert out["inliers"].shape == (len(p0),) and not out["inliers"].any()


@pytest.mark.parametrize("case", ["one_off_line", "noisy_line"])
@pytest.mark.parametrize("conf", [{"name": "poselib"}] + PLAIN + ACCURATE[1:], ids=_id)
def test_collinear_inliers_fail(conf, case):
    """Matches on a line (80 exact + 1 random, or 80 with 0.3 px noise) determine no H.

    The input is not exactly collinear, so this is caught after the library call.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 600, 80)
    p0 = np.stack([x, 0.3 * x + 50], -1)
    p1 = p0 + [5.0, 2.0]
    if case == "one_off_line":
        p0 = np.r_[p0, [[100.0, 400.0]]]
        p1 = np.r_[p1, [[300.0, 20.0]]]
    else:
        p0 = p0 + rng.normal(0, 0.3, p0.shape)
    data = {"m_kpts0": torch.tensor(p0), "m_kpts1": torch.tensor(p1)}
    out = load_estimator("homography", {**conf, "ransac_th": 2.0})(data)
    assert out["success"] is False
    assert not out["inliers"].any()


def test_shape_errors_name_the_key():
    est = load_estimator("homography", {"name": "poselib"})
    with pytest.raises(ValueError, match="m_kpts1"):
        est({"m_kpts0": torch.zeros(10, 2), "m_kpts1": torch.zeros(10, 3)})
    with pytest.raises(ValueError, match="same shape"):
        est({"m_kpts0": torch.zeros(10, 2), "m_kpts1": torch.zeros(9, 2)})
    with pytest.raises(KeyError, match="m_kpts1"):
        est({"m_kpts0": torch.zeros(10, 2)})


# --------------------------------------------------------------------------------------
# Every option reaches the library


def test_opencv_forwards_every_option(monkeypatch, make_homography_problem):
    calls = {}
    real = cv2.findHomography

    def spy_find(p0, p1, **kw):
        calls["find"] = kw
        return real(p0, p1, **kw)

    monkeypatch.setattr(cv_module.cv2, "findHomography", spy_find)
    monkeypatch.setattr(
        cv_module.cv2, "setRNGSeed", lambda s: calls.setdefault("seed", s)
    )
    conf = {
        "name": "opencv",
        "ransac_th": 2.5,
        "method": "usac_accurate",
        "max_iters": 1234,
        "confidence": 0.97,
        "seed": 42,
    }
    est = load_estimator("homography", conf)
    assert set(est.conf.keys()) == set(conf)  # nothing declared that is not tested here
    est(make_homography_problem(0))
    assert calls["find"] == {
        "method": cv2.USAC_ACCURATE,
        "ransacReprojThreshold": 2.5,
        "maxIters": 1234,
        "confidence": 0.97,
    }
    assert calls["seed"] == 42


def test_poselib_forwards_every_option(monkeypatch, make_homography_problem):
    calls = {}
    real = pl_module.poselib.estimate_homography

    def spy(p0, p1, ransac_opt, bundle_opt):
        calls["ransac"], calls["bundle"] = dict(ransac_opt), dict(bundle_opt)
        return real(p0, p1, ransac_opt, bundle_opt)

    monkeypatch.setattr(pl_module.poselib, "estimate_homography", spy)
    est = load_estimator("homography", {"name": "poselib"})
    changed_r = {
        "max_iterations": 5000,
        "min_iterations": 50,
        "dyn_num_trials_mult": 2.0,
        "success_prob": 0.99,
        "seed": 7,
        "progressive_sampling": True,
        "max_prosac_iterations": 300,
        "real_focal_check": True,
    }
    changed_b = {
        "max_iterations": 10,
        "loss_scale": 0.7,
        "loss_type": "HUBER",
        "gradient_tol": 1e-8,
        "step_tol": 1e-6,
        "initial_lambda": 1e-2,
        "min_lambda": 1e-9,
        "max_lambda": 1e9,
        "verbose": False,
    }
    assert set(changed_r) == set(est.conf.ransac_options)
    assert set(changed_b) == set(est.conf.bundle_options)
    conf = {
        "name": "poselib",
        "ransac_th": 3.5,
        "ransac_options": changed_r,
        "bundle_options": changed_b,
    }
    load_estimator("homography", conf)(make_homography_problem(0))
    assert calls["ransac"] == {**changed_r, "max_reproj_error": 3.5}
    assert calls["bundle"] == changed_b


def test_poselib_default_loss_scale_left_to_poselib(
    monkeypatch, make_homography_problem
):
    calls = {}
    real = pl_module.poselib.estimate_homography

    def spy(p0, p1, ransac_opt, bundle_opt):
        calls["bundle"] = dict(bundle_opt)
        return real(p0, p1, ransac_opt, bundle_opt)

    monkeypatch.setattr(pl_module.poselib, "estimate_homography", spy)
    load_estimator("homography", {"name": "poselib"})(make_homography_problem(0))
    assert "loss_scale" not in calls["bundle"]


def test_poselib_options_match_installed_poselib():
    import poselib

    est = load_estimator("homography", {"name": "poselib"})
    thresholds = {"max_reproj_error", "max_epipolar_error"}
    assert set(est.conf.ransac_options) == set(poselib.RansacOptions()) - thresholds
    assert set(est.conf.bundle_options) == set(poselib.BundleOptions())


def test_changed_option_changes_result(make_homography_problem):
    pb = make_homography_problem(2)
    a = load_estimator("homography", {"name": "poselib", "ransac_th": 2.0})(pb)
    b = load_estimator("homography", {"name": "poselib", "ransac_th": 0.3})(pb)
    assert a["inliers"].sum() > b["inliers"].sum()


@pytest.mark.parametrize(
    "conf, match",
    [
        ({"name": "opencv", "methd": "ransac"}, "methd"),
        ({"name": "opencv", "method": "magsac"}, "magsac"),
        (
            {"name": "poselib", "ransac_options": {"max_reproj_error": 2.0}},
            "max_reproj_error",
        ),
        ({"name": "poselib", "options": {}}, "options"),
    ],
)
def test_bad_config_is_rejected(conf, match):
    with pytest.raises(ConfigError, match=match):
        load_estimator("homography", conf)


# --------------------------------------------------------------------------------------
# Weighted DLT


def test_dlt_weights_remove_outliers(make_homography_problem):
    pb = make_homography_problem(4, outliers=0.3, noise=0.0)
    w = torch.from_numpy(pb["inl"]).double()
    H, ok = find_homography_dlt(
        torch.from_numpy(pb["p0"]), torch.from_numpy(pb["p1"]), w
    )
    assert ok and homography_corner_error(H, pb["H"], pb["size"]) < 1e-6
    H, ok = find_homography_dlt(torch.from_numpy(pb["p0"]), torch.from_numpy(pb["p1"]))
    assert ok and homography_corner_error(H, pb["H"], pb["size"]) > 10


def test_dlt_weights_are_relative(make_homography_problem):
    pb = make_homography_problem(5, outliers=0.0, noise=1.0)
    p0, p1 = torch.from_numpy(pb["p0"]), torch.from_numpy(pb["p1"])
    w = torch.rand(
        len(p0), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    H1, _ = find_homography_dlt(p0, p1, w)
    H2, _ = find_homography_dlt(p0, p1, 7.0 * w)
    H3, _ = find_homography_dlt(p0, p1)
    torch.testing.assert_close(H1, H2)
    assert not torch.allclose(H1, H3)


def test_dlt_batched_equals_single(make_homography_problem):
    pbs = [make_homography_problem(s, outliers=0.0, noise=0.5) for s in range(3)]
    p0 = torch.stack([torch.from_numpy(p["p0"]) for p in pbs])
    p1 = torch.stack([torch.from_numpy(p["p1"]) for p in pbs])
    p1[1, :, 1] = 5.0  # element 1 degenerate (collinear): fails alone
    H, ok = find_homography_dlt(p0, p1)
    assert ok.tolist() == [True, False, True]
    for i in (0, 2):
        Hi, oki = find_homography_dlt(p0[i], p1[i])
        torch.testing.assert_close(H[i], Hi)
    torch.testing.assert_close(H[1], torch.eye(3, dtype=H.dtype))


def test_dlt_zero_weight_nan_is_ignored(make_homography_problem):
    pb = make_homography_problem(6, outliers=0.0, noise=0.0)
    p0 = torch.from_numpy(pb["p0"]).clone()
    p0[0] = math.nan
    w = torch.ones(len(p0), dtype=torch.float64)
    assert not find_homography_dlt(p0, torch.from_numpy(pb["p1"]), w)[1]
    w[0] = 0
    H, ok = find_homography_dlt(p0, torch.from_numpy(pb["p1"]), w)
    assert ok and homography_corner_error(H, pb["H"], pb["size"]) < 1e-6


def test_dlt_estimator_uses_scores(make_homography_problem):
    pb = make_homography_problem(7, outliers=0.3, noise=0.0)
    data = dict(pb, m_scores=torch.from_numpy(pb["inl"]).float())
    out = load_estimator("homography", {"name": "dlt"})(data)
    assert out["success"] and torch.equal(out["inliers"], torch.from_numpy(pb["inl"]))
    assert homography_corner_error(out["M_0to1"], pb["H"], pb["size"]) < 1e-3


def test_dlt_matches_kornia(make_homography_problem):
    """Parity with kornia 0.9.0's find_homography_dlt (installed in CI as reference)."""
    kornia = pytest.importorskip("kornia")
    pb = make_homography_problem(8, outliers=0.0, noise=0.0)
    p0 = torch.from_numpy(pb["p0"])[None]
    p1 = torch.from_numpy(pb["p1"])[None]
    w = torch.rand(
        1,
        len(pb["p0"]),
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    ref = kornia.geometry.homography.find_homography_dlt(p0, p1, w, solver="svd")[0]
    ours, ok = find_homography_dlt(p0[0], p1[0], w[0])
    assert ok
    torch.testing.assert_close(ours, ref / ref[2, 2], atol=1e-9, rtol=1e-7)


# --------------------------------------------------------------------------------------
# Real photograph


@pytest.fixture(scope="module")
def sift_matches(homography_pair):
    """Mutual-nearest SIFT matches on a real photo and its warp, library convention."""
    if not hasattr(cv2, "SIFT_create"):
        pytest.skip("this OpenCV build has no SIFT")
    gray = [
        cv2.cvtColor(
            (homography_pair[k][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
            cv2.COLOR_RGB2GRAY,
        )
        for k in ("image0", "image1")
    ]
    sift = cv2.SIFT_create(2000)
    (k0, d0), (k1, d1) = (sift.detectAndCompute(g, None) for g in gray)
    matches = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(d0, d1)
    # OpenCV keypoints put pixel centres on integers: +0.5 to the library convention
    p0 = np.array([k0[m.queryIdx].pt for m in matches]) + 0.5
    p1 = np.array([k1[m.trainIdx].pt for m in matches]) + 0.5
    h, w = gray[0].shape
    return p0, p1, homography_pair["H_0to1"].double().numpy(), (w, h)


@pytest.mark.parametrize(
    "conf", [{"name": "poselib"}, {"name": "opencv"}] + ACCURATE[1:2], ids=_id
)
def test_real_photo(conf, sift_matches):
    """SIFT matches on a real photo warped by a known H (library convention)."""
    p0, p1, H, size = sift_matches
    data = {"m_kpts0": torch.from_numpy(p0), "m_kpts1": torch.from_numpy(p1)}
    out = load_estimator("homography", {**conf, "ransac_th": 1.0})(data)
    assert out["success"] and out["inliers"].sum() > 100
    assert homography_corner_error(out["M_0to1"], H, size) < 0.3
    # the weighted DLT on the robust inliers is as good
    w = out["inliers"].double()
    H_dlt, ok = find_homography_dlt(data["m_kpts0"], data["m_kpts1"], w)
    assert ok and homography_corner_error(H_dlt, H, size) < 0.3


@pytest.mark.parametrize(
    "conf",
    [
        {"name": "poselib", "ransac_th": 3.0},
        {"name": "opencv", "method": "usac_magsac", "ransac_th": 2.0},
    ],
)
def test_issue_criterion_below_0p1px(conf, make_homography_problem):
    """The issue's bar, literally: < 0.1 px mean corner error with 30% outliers and 0.5 px
    noise (in both views). With 0.5 px noise the bar is only reachable with enough
    matches (the least-squares noise floor shrinks as 1/sqrt(N)): 2000 matches, as a
    learned matcher gives on a 1024 px image, and a threshold of about 4 sigma of the
    residual (0.5 px * sqrt(2) per view pair)."""
    est = load_estimator("homography", conf)
    for seed in range(5):
        pb = make_homography_problem(seed, n=2000, outliers=0.3, noise=0.5)
        out = est(pb)
        assert out["success"]
        err = homography_corner_error(out["M_0to1"].double(), pb["H"], pb["size"])
        assert err < 0.1, (seed, err)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_dlt_too_few_points_fail_without_raising(n):
    """One match (seen on a built-in HPatches pair) made eigh raise on a NaN system."""
    from gluefactory.robust_estimators.homography.dlt import find_homography_dlt

    k0 = torch.tensor([[57.5, 312.5], [10.0, 20.0], [30.0, 5.0]], dtype=torch.float64)[
        :n
    ]
    k1 = torch.tensor([[310.5, 320.5], [12.0, 25.0], [31.0, 9.0]], dtype=torch.float64)[
        :n
    ]
    H, success = find_homography_dlt(
        k0, k1, torch.full((n,), 0.19, dtype=torch.float64)
    )
    assert not bool(success) and torch.equal(H, torch.eye(3, dtype=H.dtype))


def test_dlt_coincident_points_fail_without_raising():
    from gluefactory.robust_estimators.homography.dlt import find_homography_dlt

    k = torch.tensor([[5.0, 5.0]] * 6)
    H, success = find_homography_dlt(k, k + 1)
    assert not bool(success)
    # and a batch mixing a good and a degenerate problem keeps the good one
    good0 = torch.tensor([[0.0, 0.0], [10, 0], [10, 10], [0, 10], [5, 3], [2, 7]])
    Hb, sb = find_homography_dlt(
        torch.stack([good0, k]), torch.stack([good0 + 2, k + 1])
    )
    assert sb.tolist() == [True, False]
    assert torch.allclose(
        Hb[0], torch.tensor([[1.0, 0, 2], [0, 1, 2], [0, 0, 1]]), atol=1e-4
    )
