"""The point+line homography estimator (``point_line``, alias ``homography_est``).

Accuracy is judged on the synthetic problems of conftest.py (30 % outliers, 0.5 px
noise on every point and endpoint in both views) against the issue's bar, < 0.5 px mean
corner error on every seed, and against the least-squares fit on the true inliers (the
noise floor).
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch

from gluefactory.eval.metrics import homography_corner_error
from gluefactory.robust_estimators import get_estimator, load_estimator
from gluefactory.robust_estimators.homography.point_line import (
    PointLineHomography,
    distinct_indices,
    sample_indices,
)


def _mixed(make_homography_problem, make_line_problem, seed, n=100, m=100):
    pts = make_homography_problem(seed, n=n)
    lines = make_line_problem(seed, m=m)
    return {**lines, "m_kpts0": pts["m_kpts0"], "m_kpts1": pts["m_kpts1"]}, pts


def _error(out, pb) -> float:
    return homography_corner_error(out["M_0to1"].double(), pb["H"], pb["size"])


def _est(**conf):
    return load_estimator("homography", {"name": "point_line", **conf})


@pytest.mark.parametrize("kind", ["points", "lines", "mixed"])
def test_issue_criterion_below_half_a_pixel(
    kind, make_homography_problem, make_line_problem
):
    """< 0.5 px mean corner error, 30 % outliers, 0.5 px noise, 5 seeds each."""
    est = _est()
    for seed in range(5):
        if kind == "points":
            pb = make_homography_problem(seed)
        elif kind == "lines":
            pb = make_line_problem(seed)
        else:
            pb, _ = _mixed(make_homography_problem, make_line_problem, seed)
        out = est(pb)
        assert out["success"], seed
        assert _error(out, pb) < 0.5, (seed, _error(out, pb))
        if kind != "points":
            found = out["line_inliers"].numpy()
            assert (found == pb["line_inl"]).mean() > 0.95


def test_points_at_the_noise_floor(make_homography_problem):
    """Within 0.1 px of the least-squares fit on the true inliers, as the accurate
    point estimators (test_homography.py)."""
    est, excess = _est(), []
    for seed in range(10):
        pb = make_homography_problem(seed)
        H, _ = cv2.findHomography(pb["p0"][pb["inl"]], pb["p1"][pb["inl"]], 0)
        floor = homography_corner_error(H, pb["H"], pb["size"])
        excess.append(_error(est(pb), pb) - floor)
    assert np.mean(excess) < 0.1 and max(excess) < 0.25, excess


def test_lines_at_the_noise_floor(make_line_problem):
    """The robust fit equals the least-squares fit on the true line inliers."""
    est = _est()
    for seed in range(3):
        pb = make_line_problem(seed)
        oracle = _est(ransac_th=1e4)(
            {
                **pb,
                "m_lines0": pb["m_lines0"][pb["line_inl"]],
                "m_lines1": pb["m_lines1"][pb["line_inl"]],
            }
        )
        assert oracle["line_inliers"].all()
        assert _error(est(pb), pb) < _error(oracle, pb) + 0.05


@pytest.mark.parametrize("kind", ["lines", "mixed"])
def test_exact_without_noise(kind, make_homography_problem, make_line_problem):
    if kind == "lines":
        pb = make_line_problem(3, noise=0.0)
    else:
        pb = {
            **make_line_problem(3, m=30, noise=0.0),
            "m_kpts0": make_homography_problem(3, n=30, noise=0.0)["m_kpts0"],
            "m_kpts1": make_homography_problem(3, n=30, noise=0.0)["m_kpts1"],
        }
    out = _est(ransac_th=1.0)(pb)
    assert out["success"] and _error(out, pb) < 0.01
    assert (out["line_inliers"].numpy() == pb["line_inl"]).mean() > 0.95


def test_lines_help_few_points(make_homography_problem, make_line_problem):
    """7 point matches alone determine H poorly; with line matches it is accurate."""
    pts = make_homography_problem(0, n=7, outliers=0.0)
    lines = make_line_problem(0, m=100)
    alone = _est()(pts)
    both = _est()({**lines, "m_kpts0": pts["m_kpts0"], "m_kpts1": pts["m_kpts1"]})
    assert both["success"] and both["inliers"].sum() >= 6
    assert _error(both, pts) < 0.5 < _error(alone, pts)


# --------------------------------------------------------------------------------------
# Points only: a point LO-MSAC, as the other estimators


def test_points_only_agrees_with_least_squares(make_homography_problem):
    """Without outliers and with a huge threshold every match is an inlier, and the fit
    is the least-squares transfer-error fit, which OpenCV's method 0 also computes."""
    pb = make_homography_problem(2, outliers=0.0, noise=1.0)
    out = _est(ransac_th=20.0)(pb)
    H_cv, _ = cv2.findHomography(pb["p0"], pb["p1"], 0)
    assert out["inliers"].all()
    assert homography_corner_error(out["M_0to1"].double(), H_cv, pb["size"]) < 1e-3


def test_points_only_agrees_with_dlt_without_noise(make_homography_problem):
    pb = make_homography_problem(4, outliers=0.0, noise=0.0)
    ours = _est()(pb)
    dlt = load_estimator("homography", {"name": "dlt"})(pb)
    assert homography_corner_error(ours["M_0to1"], dlt["M_0to1"], pb["size"]) < 1e-3


def test_points_only_agrees_with_opencv(make_homography_problem):
    pb = make_homography_problem(5)
    ours = _est(ransac_th=2.0)(pb)
    cv = load_estimator(
        "homography", {"name": "opencv", "method": "usac_accurate", "ransac_th": 2.0}
    )(pb)
    diff = homography_corner_error(
        ours["M_0to1"].double(), cv["M_0to1"].double().numpy(), pb["size"]
    )
    assert diff < 0.15
    assert (ours["inliers"] == cv["inliers"]).float().mean() > 0.98


def test_without_line_keys_equals_no_lines(make_homography_problem):
    pb = make_homography_problem(6)
    a = _est()(pb)
    b = _est()(
        {**pb, "m_lines0": torch.zeros(0, 2, 2), "m_lines1": torch.zeros(0, 2, 2)}
    )
    assert torch.equal(a["M_0to1"], b["M_0to1"])
    assert torch.equal(a["inliers"], b["inliers"])
    assert a["line_inliers"].shape == (0,) and a["line_inliers"].dtype == torch.bool


# --------------------------------------------------------------------------------------
# Degenerate input: failure, never an exception


def _degenerate_cases():
    rng = np.random.default_rng(0)
    pts = rng.uniform(0, 500, (50, 2))
    x = np.linspace(0, 600, 50)
    on_line = np.stack([x, 0.5 * x + 3], -1)
    segs = rng.uniform(0, 500, (50, 2, 2))
    # parallel lines in both views (a translation maps them to parallel lines)
    start = np.stack([np.zeros(20), np.linspace(0, 400, 20)], -1)
    parallel = np.stack([start, start + [300.0, 100.0]], 1)
    # all lines through the point (200, 150)
    angle = np.linspace(0, np.pi, 20, endpoint=False)
    d = np.stack([np.cos(angle), np.sin(angle)], -1)
    concurrent = np.stack([[200.0, 150.0] + 30 * d, [200.0, 150.0] + 200 * d], 1)
    # points on one line, lines all through a point of it: the mixed analogue
    through = np.stack([[300.0, 153.0] + 30 * d, [300.0, 153.0] + 200 * d], 1)
    zero = segs.copy()
    zero[3, 1] = zero[3, 0]
    nan = segs.copy()
    nan[5, 0, 1] = np.nan
    none = np.zeros((0, 2))
    return {
        "nothing": (none, none, None),
        "three_points": (pts[:3], pts[:3] + 1, None),
        "three_lines": (none, none, (segs[:3], segs[:3] + 1)),
        "two_points_one_line": (pts[:2], pts[:2] + 1, (segs[:1], segs[:1] + 1)),
        # always a one-parameter family of solutions (see sample_indices)
        "two_points_two_lines": (pts[:2], pts[:2] * 1.1, (segs[:2], segs[:2] * 1.1)),
        "collinear_points": (on_line, on_line * 1.1 + 2, None),
        "parallel_lines": (none, none, (parallel, parallel + 5.0)),
        "concurrent_lines": (none, none, (concurrent, concurrent * 0.9 + 3)),
        "collinear_points_concurrent_lines": (
            on_line,
            on_line + 2,
            (through, through + 2),
        ),
        "zero_length_segment": (none, none, (zero, zero + 1)),
        "nan_segment": (pts, pts + 1, (nan, nan + 1)),
    }


DEGENERATE = _degenerate_cases()


@pytest.mark.parametrize("name", ["point_line", "homography_est"])
@pytest.mark.parametrize("case", list(DEGENERATE))
def test_degenerate_input_fails_cleanly(case, name):
    p0, p1, lines = DEGENERATE[case]
    data = {"m_kpts0": torch.tensor(p0), "m_kpts1": torch.tensor(p1)}
    if lines is not None:
        data["m_lines0"], data["m_lines1"] = (torch.tensor(s) for s in lines)
    out = load_estimator("homography", {"name": name})(data)
    assert out["success"] is False
    assert torch.equal(out["M_0to1"], torch.eye(3, dtype=torch.float64))
    assert out["inliers"].shape == (len(p0),) and not out["inliers"].any()
    m = 0 if lines is None else len(lines[0])
    assert out["line_inliers"].shape == (m,) and not out["line_inliers"].any()


def test_malformed_lines_name_the_key(make_line_problem):
    pb = make_line_problem(0)
    with pytest.raises(KeyError, match="m_lines1"):
        _est()({**pb, "m_lines1": None})
    with pytest.raises(ValueError, match="m_lines0"):
        _est()({**pb, "m_lines0": torch.zeros(10, 4)})
    with pytest.raises(ValueError, match="same shape"):
        _est()({**pb, "m_lines0": pb["m_lines0"][:5]})


def test_a_batch_of_one_is_accepted(make_line_problem):
    pb = make_line_problem(1)
    a = _est()(pb)
    b = _est()(
        {**pb, "m_lines0": pb["m_lines0"][None], "m_lines1": pb["m_lines1"][None]}
    )
    assert torch.equal(a["M_0to1"], b["M_0to1"])


# --------------------------------------------------------------------------------------
# Determinism, options, names


def test_deterministic_for_a_seed(make_homography_problem, make_line_problem):
    pb, _ = _mixed(make_homography_problem, make_line_problem, 7)
    a, b = _est(seed=3)(pb), _est(seed=3)(pb)
    assert torch.equal(a["M_0to1"], b["M_0to1"])
    assert torch.equal(a["inliers"], b["inliers"])
    assert torch.equal(a["line_inliers"], b["line_inliers"])
    # the best of a few samples, unrefined, shows that the seed picks the samples
    few = {"min_iters": 8, "max_iters": 8, "lo_iters": 0, "refine_rounds": 0}
    a, b = _est(seed=3, **few)(pb), _est(seed=3, **few)(pb)
    c = _est(seed=4, **few)(pb)
    assert torch.equal(a["M_0to1"], b["M_0to1"])
    assert not torch.equal(a["M_0to1"], c["M_0to1"])


def test_threshold_changes_the_inliers(make_homography_problem, make_line_problem):
    pb, _ = _mixed(make_homography_problem, make_line_problem, 8)
    loose, strict = _est(ransac_th=3.0)(pb), _est(ransac_th=0.5)(pb)
    assert loose["inliers"].sum() > strict["inliers"].sum()
    assert loose["line_inliers"].sum() > strict["line_inliers"].sum()


def test_adaptive_number_of_samples(monkeypatch, make_line_problem):
    """More outliers, more samples; never fewer than min_iters nor more than max."""
    drawn = []
    real = sample_indices

    def spy(rng, n, m, k):
        drawn.append(k)
        return real(rng, n, m, k)

    from gluefactory.robust_estimators.homography import point_line

    monkeypatch.setattr(point_line, "sample_indices", spy)
    counts = {}
    for outliers in (0.1, 0.7):
        drawn.clear()
        _est(min_iters=10, batch_size=10)(make_line_problem(0, outliers=outliers))
        counts[outliers] = sum(drawn)
    assert 10 <= counts[0.1] < counts[0.7] <= 10000
    drawn.clear()
    _est(max_iters=50, batch_size=20)(make_line_problem(0, outliers=0.8))
    assert drawn == [20, 20, 10]


def test_distinct_indices_are_distinct_and_uniform():
    rng = np.random.default_rng(0)
    idx = distinct_indices(rng, 6, 30000, 4)
    assert all(len(set(row)) == 4 for row in idx[:2000].tolist())
    counts = np.bincount(idx.ravel(), minlength=6) / idx.size
    np.testing.assert_allclose(counts, 1 / 6, atol=0.01)
    # every 4-subset of 6 items (15) about equally often
    subsets = np.unique(np.sort(idx, 1), axis=0, return_counts=True)[1]
    assert len(subsets) == 15 and subsets.min() > 0.8 * subsets.max()


def test_minimal_samples_are_never_two_points_and_two_lines():
    """Uniform over the other 4-subsets: the compositions come in proportion to
    C(m, t) C(n, 4 - t), and the indices address points, then lines."""
    from math import comb

    n, m = 7, 5
    idx = sample_indices(np.random.default_rng(1), n, m, 40000)
    assert all(len(set(row)) == 4 for row in idx[:2000].tolist())
    assert idx.min() >= 0 and idx.max() < n + m
    lines = (idx >= n).sum(1)
    expected = np.array([comb(m, t) * comb(n, 4 - t) for t in range(5)], float)
    expected[2] = 0
    freq = np.bincount(lines, minlength=5) / len(idx)
    np.testing.assert_allclose(freq, expected / expected.sum(), atol=0.01)
    # with 2 points and 2 lines there is no valid sample; 3 points, 1 line one kind
    assert sample_indices(np.random.default_rng(0), 2, 2, 5).shape == (0, 4)
    assert ((sample_indices(np.random.default_rng(0), 3, 1, 5) >= 3).sum(1) == 1).all()


def test_alias_homography_est(caplog):
    cls = get_estimator("homography", "homography_est")
    assert issubclass(cls, PointLineHomography)
    with caplog.at_level(logging.WARNING):
        est = load_estimator(
            "homography", {"name": "homography_est", "ransac_th": 1.5, "options": {}}
        )
    assert est.conf.ransac_th == 1.5 and "options" in caplog.text


def test_every_option_is_used(monkeypatch, make_line_problem):
    """Each option changes what the estimator does (nothing declared is dead): the
    samples drawn, the number of DLT solves or the result."""
    from gluefactory.robust_estimators.homography import point_line

    trace = []
    real_sample, real_dlt = point_line.sample_indices, point_line.dlt_null_vector

    def sample(rng, n, m, k):
        idx = real_sample(rng, n, m, k)
        trace.append(("sample", idx.tobytes()))
        return idx

    def dlt(A):
        trace.append(("dlt", A.shape))
        return real_dlt(A)

    monkeypatch.setattr(point_line, "sample_indices", sample)
    monkeypatch.setattr(point_line, "dlt_null_vector", dlt)

    def run(**conf):
        trace.clear()
        conf = {"min_iters": 1, **conf}
        out = _est(**conf)(make_line_problem(2, m=60, outliers=0.5))
        return list(trace), out["M_0to1"].numpy().tobytes(), out["line_inliers"]

    base = run()
    changed = {
        "ransac_th": 0.7,
        "confidence": 0.5,
        "min_iters": 400,
        "max_iters": 3,
        "batch_size": 5,
        "lo_iters": 0,
        "refine_rounds": 0,
        "refine_iters": 1,
        "seed": 1,
    }
    assert set(changed) | {"name"} == set(_est().conf)
    for key, value in changed.items():
        t, H, inl = run(**{key: value})
        assert t != base[0] or H != base[1] or not torch.equal(inl, base[2]), key


@pytest.mark.parametrize("th", [0.1, 2.0, 50.0])
def test_random_correspondences_never_raise(th):
    """Pure noise, few correspondences (fewer inliers than a sample is a failure)."""
    rng = np.random.default_rng(0)
    est, outcomes = _est(ransac_th=th), set()
    for _ in range(40):
        n, m = int(rng.integers(0, 12)), int(rng.integers(0, 8))
        out = est(
            {
                "m_kpts0": torch.tensor(rng.uniform(0, 640, (n, 2))),
                "m_kpts1": torch.tensor(rng.uniform(0, 640, (n, 2))),
                "m_lines0": torch.tensor(rng.uniform(0, 640, (m, 2, 2))),
                "m_lines1": torch.tensor(rng.uniform(0, 640, (m, 2, 2))),
            }
        )
        outcomes.add(out["success"])
        if out["success"]:
            assert out["inliers"].sum() + out["line_inliers"].sum() >= 4
    assert outcomes == {True, False}


# --------------------------------------------------------------------------------------
# Real photograph: LSD segments, cut differently in the two images


def _lsd(image: torch.Tensor) -> np.ndarray:
    """OpenCV's LSD segments (L, 2, 2) of at least 20 px, library convention."""
    rgb = (image.reshape(-1, *image.shape[-2:]).permute(1, 2, 0).numpy() * 255).astype(
        np.uint8
    )
    lines = cv2.createLineSegmentDetector().detect(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    )[0]
    segs = lines.reshape(-1, 2, 2).astype(np.float64) + 0.5  # OpenCV 4 and 5 shapes
    return segs[np.linalg.norm(segs[:, 0] - segs[:, 1], axis=-1) >= 20]


def test_real_photo_lsd_lines(homography_pair):
    """LSD segments of a photo and of its warp, matched through the true H (both
    endpoints within 1.5 px of the other line, overlapping by 5 px), 30 % of the
    matches then shuffled: lines alone recover H to < 0.5 px."""
    from gluefactory.geometry.homography import segment_lines, warp_points_numpy

    if not hasattr(cv2, "createLineSegmentDetector"):
        pytest.skip("this OpenCV build has no LSD")
    s0, s1 = _lsd(homography_pair["image0"]), _lsd(homography_pair["image1"])
    H = homography_pair["H_0to1"].double().numpy()
    w0 = warp_points_numpy(s0.reshape(-1, 2), H).reshape(-1, 2, 2)
    dist = np.abs(
        np.einsum(
            "mk,nek->nem",
            segment_lines(s1),
            np.concatenate([w0, np.ones((len(w0), 2, 1))], -1),
        )
    ).max(1)  # (L0, L1) farther warped endpoint to each line of image 1
    length = np.linalg.norm(s1[:, 1] - s1[:, 0], axis=-1)
    along = (s1[:, 1] - s1[:, 0]) / length[:, None]
    t = np.einsum("nek,mk->nem", w0, along) - (s1[:, 0] * along).sum(-1)
    overlap = np.minimum(t.max(1), length) - np.maximum(t.min(1), 0)
    cost = np.where((dist < 1.5) & (overlap > 5), dist, np.inf)
    matched = np.isfinite(cost.min(1))
    m0, m1 = s0[matched], s1[cost.argmin(1)[matched]]
    assert len(m0) > 80
    rng = np.random.default_rng(0)
    wrong = rng.choice(len(m0), int(0.3 * len(m0)), replace=False)
    m1[wrong] = m1[rng.permutation(wrong)]
    data = {
        "m_kpts0": torch.zeros(0, 2),
        "m_kpts1": torch.zeros(0, 2),
        "m_lines0": torch.from_numpy(m0),
        "m_lines1": torch.from_numpy(m1),
    }
    out = _est(ransac_th=1.0)(data)
    size = homography_pair["image0"].shape[-1], homography_pair["image0"].shape[-2]
    assert out["success"]
    assert homography_corner_error(out["M_0to1"].double(), H, size) < 0.5
    assert out["line_inliers"].sum() > 0.6 * len(m0)


@pytest.mark.parametrize(
    "key, value",
    [
        ("ransac_th", 0.0),
        ("confidence", 1.0),
        ("max_iters", 0),
        ("batch_size", 2.5),
        ("min_iters", -1),
        ("lo_iters", True),
        ("refine_rounds", -2),
        ("refine_iters", "3"),
        ("methd", 1),
    ],
)
def test_bad_options_are_config_errors(key, value):
    from gluefactory.utils.conf import ConfigError

    with pytest.raises(ConfigError, match=key):
        _est(**{key: value})


def test_minimal_solver_lu_and_svd_agree(make_homography_problem, make_line_problem):
    """The batched LU (H[2, 2] = 1) gives the SVD's models; a batch with an exactly
    singular system (a repeated correspondence) falls back to the SVD."""
    from gluefactory.geometry.homography import dlt_null_vector
    from gluefactory.robust_estimators.homography.point_line import _Correspondences

    pts = make_homography_problem(0, n=50, outliers=0.0, noise=0.0)
    lines = make_line_problem(0, m=50, outliers=0.0, noise=0.0)
    c = _Correspondences(
        pts["p0"], pts["p1"], lines["m_lines0"].numpy(), lines["m_lines1"].numpy()
    )
    idx = sample_indices(np.random.default_rng(0), 50, 50, 64)
    h, cond = dlt_null_vector(c.rows[idx].reshape(64, 8, 9))
    svd = h.reshape(64, 3, 3) / h[:, -1, None, None]
    lu = _est()._minimal_models(c, idx)
    assert len(lu) == 64  # noise-free, no outliers: every sample is valid
    kept = [i for i in range(64) if np.allclose(svd[i], lu, atol=1e-6)]  # any match
    assert len(kept) >= len(lu)
    singular = np.concatenate([idx[:8], [[0, 0, 1, 2]]])
    both = _est()._minimal_models(c, singular)
    assert len(both) == len(_est()._minimal_models(c, idx[:8]))


def test_two_points_and_two_lines_determine_no_homography(
    make_homography_problem, make_line_problem
):
    """H + t X' L^T maps them all (L: line through the points in image 0, X': the
    lines' intersection in image 1): the DLT has a 2-dimensional null space."""
    from gluefactory.geometry.homography import dlt_null_vector
    from gluefactory.robust_estimators.homography.point_line import _Correspondences

    for n_pts, n_lines in ((2, 2), (3, 1), (1, 3)):
        pts = make_homography_problem(0, n=n_pts, outliers=0.0, noise=0.0)
        lines = make_line_problem(0, m=n_lines, outliers=0.0, noise=0.0)
        c = _Correspondences(
            pts["p0"], pts["p1"], lines["m_lines0"].numpy(), lines["m_lines1"].numpy()
        )
        cond = dlt_null_vector(c.rows.reshape(8, 9))[1]
        assert (cond < 1e-12) == (n_pts == 2), (n_pts, cond)
