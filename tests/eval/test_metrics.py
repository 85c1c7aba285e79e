"""Metrics with closed-form answers, AUC properties, per-pair convenience functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gluefactory.eval import metrics as M
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.utils.errors import InputError

FIVE = torch.tensor([[10.0, 10], [200, 20], [30, 300], [400, 40], [50, 450]])


def rot_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


# --------------------------------------------------------------------------------------
# Match precision (homography)


@pytest.mark.parametrize(
    "H",
    [np.eye(3), np.array([[1, 0, 5.0], [0, 1, -3], [0, 0, 1]])],
    ids=["id", "transl"],
)
def test_precision_one_outlier_at_1_5px(H):
    k1 = FIVE + torch.from_numpy(H[:2, 2]).float()
    k1[2, 0] += 1.5  # symmetric error 1.5 px (both transfers are 1.5 px off)
    out = M.matches_precision_homography(FIVE, k1, H)
    assert out == {"prec@1px": pytest.approx(0.8), "prec@3px": pytest.approx(1.0)}


def test_symmetric_transfer_error_closed_form():
    """H = 2x scale: p1 = 2 p0 + d gives |d| forward, |d|/2 backward, mean 0.75 |d|."""
    H = np.diag([2.0, 2.0, 1.0])
    d = torch.tensor([0.0, 2.0])  # 0.75 * 2 = 1.5 px
    k1 = 2 * FIVE + d
    out = M.matches_precision_homography(FIVE, k1, H, thresholds=(1.4, 1.6))
    assert out == {"prec@1.4px": 0.0, "prec@1.6px": 1.0}


def test_precision_no_matches_is_zero():
    out = M.matches_precision_homography(np.zeros((0, 2)), np.zeros((0, 2)), np.eye(3))
    assert out == {"prec@1px": 0.0, "prec@3px": 0.0}


# --------------------------------------------------------------------------------------
# Homography corner error


def test_corner_error_closed_form():
    T = np.array([[1, 0, 3.0], [0, 1, 4], [0, 0, 1]])
    assert M.homography_corner_error(np.eye(3), np.eye(3), (640, 480)) == 0.0
    assert M.homography_corner_error(T, np.eye(3), (640, 480)) == pytest.approx(5.0)
    # 10% scale about the origin: corners (0,0), (W,0), (W,H), (0,H) move by 0, .1W,
    # .1 sqrt(W^2+H^2), .1H (corner convention: W, not W - 1)
    S = np.diag([1.1, 1.1, 1.0])
    expected = 0.1 * (640 + math.hypot(640, 480) + 480) / 4
    assert M.homography_corner_error(S, np.eye(3), (640, 480)) == pytest.approx(
        expected
    )
    assert M.homography_corner_error(
        torch.tensor(S), torch.eye(3), torch.tensor([640, 480])
    ) == pytest.approx(expected)


def test_corner_error_failure_is_inf():
    assert M.homography_corner_error(None, np.eye(3), (10, 10)) == math.inf
    assert (
        M.homography_corner_error(np.full((3, 3), np.nan), np.eye(3), (10, 10))
        == math.inf
    )


# --------------------------------------------------------------------------------------
# Pose error


def test_pose_error_known_rotations():
    T = Pose.from_Rt(
        torch.eye(3, dtype=torch.float64), torch.tensor([1.0, 0, 0]).double()
    )
    t = np.array([1.0, 0, 0])
    assert M.pose_error(T, np.eye(3), t) == pytest.approx(0.0, abs=1e-6)
    assert M.pose_error(T, rot_z(10), t) == pytest.approx(10.0)
    assert M.pose_error(T, rot_z(-30), 5 * t) == pytest.approx(30.0)  # scale-free
    # translation: sign ambiguity folds 170 deg to 10 deg, 90 deg stays 90
    assert M.pose_error(T, np.eye(3), -t) == pytest.approx(0.0, abs=1e-6)
    assert M.pose_error(T, np.eye(3), rot_z(170) @ t) == pytest.approx(10.0)
    assert M.pose_error(T, np.eye(3), rot_z(90) @ t) == pytest.approx(90.0)
    # the max of the two
    assert M.pose_error(T, rot_z(4), rot_z(7) @ t) == pytest.approx(7.0)
    assert M.pose_error(T, rot_z(8), rot_z(7) @ t) == pytest.approx(8.0)
    assert M.pose_error(T, np.full((3, 3), np.nan), t) == math.inf


# --------------------------------------------------------------------------------------
# AUC and mAA


def test_auc_by_hand_with_a_failure():
    """errors 0.2, 0.5, 1.5, 2.5, inf; recall 0.2 ... 1.0.

    t=1: (0,0) (.2,.2) (.5,.4) (1,.4): .02 + .09 + .2 = .31 -> .31
    t=3: + (1.5,.6) (2.5,.8) (3,.8): .31 - .2 + .5 + .7 + .4 = 1.71 -> .57
    t=5: .02 + .09 + .5 + .7 + 2.5 * .8 = 3.31 -> .662
    """
    errors = [1.5, math.inf, 0.2, 2.5, 0.5]  # order does not matter
    assert M.auc(errors, [1, 3, 5]) == pytest.approx([0.31, 0.57, 0.662])
    assert M.mAA(errors, [1, 3, 5]) == pytest.approx((0.31 + 0.57 + 0.662) / 3)
    assert M.auc(np.array(errors), [1, 3, 5], round=1) == [0.3, 0.6, 0.7]
    # NaN counts as a failure, like inf
    assert M.auc([1.5, math.nan, 0.2, 2.5, 0.5], [1, 3, 5]) == pytest.approx(
        [0.31, 0.57, 0.662]
    )


def test_auc_edge_cases():
    assert M.auc([0.0, 0.0], [1, 5]) == [1.0, 1.0]
    assert M.auc([math.inf] * 3, [1]) == [0.0]
    assert M.auc([1.0], [1.0]) == [0.0]  # only errors strictly below t count
    assert M.auc([0.5], [1.0]) == pytest.approx([0.75])  # (0,0)-(.5,1) then flat
    assert all(math.isnan(a) for a in M.auc([], [1, 3]))
    with pytest.raises(ValueError, match=">= 0"):
        M.auc([-1.0], [1])
    with pytest.raises(ValueError, match="> 0"):
        M.auc([1.0], [0])


errors_st = st.lists(
    st.one_of(st.floats(0, 50, allow_nan=False), st.just(math.inf)),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(errors_st, st.floats(0.01, 60))
def test_auc_in_unit_interval(errors, t):
    (a,) = M.auc(errors, [t])
    assert 0.0 <= a <= 1.0 + 1e-12


@settings(max_examples=200, deadline=None)
@given(
    errors_st.flatmap(
        lambda e: st.tuples(
            st.just(e),
            st.lists(
                st.one_of(st.floats(0, 20, allow_nan=False), st.just(math.inf)),
                min_size=len(e),
                max_size=len(e),
            ),
        )
    ),
    st.floats(0.01, 60),
)
def test_auc_monotone_in_errors(pair, t):
    """Increasing any error never increases the AUC."""
    errors, deltas = pair
    worse = [e + d for e, d in zip(errors, deltas, strict=True)]
    assert M.auc(worse, [t])[0] <= M.auc(errors, [t])[0] + 1e-12


# --------------------------------------------------------------------------------------
# Epipolar precision


def _stereo(f=1000.0):
    cam = Camera.from_calibration_matrix(
        torch.tensor([[f, 0, 320.0], [0, f, 240], [0, 0, 1]]),
        torch.tensor([640.0, 480]),
    )
    T = Pose.from_Rt(torch.eye(3), torch.tensor([1.0, 0, 0]))
    return cam, T


def test_epipolar_precision_closed_form():
    """Pure x translation: E = [t]x, the distance is |dy| / f in normalised units."""
    cam, T = _stereo()
    k1 = FIVE + torch.tensor([-25.0, 0])  # on the epipolar lines (horizontal)
    out = M.epipolar_precision(FIVE, k1, T, cam, cam)
    assert out == {"epi_prec@1e-4": 1.0, "epi_prec@5e-4": 1.0, "epi_prec@1e-3": 1.0}
    k1[:, 1] += torch.tensor([0.0, 0.05, 0.3, 0.8, 2.0])  # 0, 5e-5, 3e-4, 8e-4, 2e-3
    out = M.epipolar_precision(FIVE, k1, T, cam, cam)
    assert out == {
        "epi_prec@1e-4": pytest.approx(0.4),
        "epi_prec@5e-4": pytest.approx(0.6),
        "epi_prec@1e-3": pytest.approx(0.8),
    }


def test_epipolar_precision_general_pose():
    """Points triangulated from a random pose lie on their epipolar lines."""
    rng = np.random.default_rng(0)
    cam, _ = _stereo(500.0)
    R = torch.from_numpy(
        rot_z(12) @ np.array([[1, 0, 0], [0, 0.96, -0.28], [0, 0.28, 0.96]])
    )
    T = Pose.from_Rt(R.float(), torch.tensor([0.4, -0.2, 0.1]))
    X = torch.from_numpy(
        np.c_[rng.uniform(-1, 1, (50, 2)), rng.uniform(3, 6, 50)]
    ).float()
    k0, _ = cam.project(X)
    k1, _ = cam.project(T.transform(X))
    assert M.epipolar_precision(k0, k1, T, cam, cam)["epi_prec@1e-4"] == 1.0
    k1[:10] += torch.tensor([0.0, 3.0])
    assert M.epipolar_precision(k0, k1, T, cam, cam)["epi_prec@1e-4"] < 0.85


# --------------------------------------------------------------------------------------
# Reprojection precision through depth


def _plane_scene(offsets, z=5.0, f=1000.0, b=0.1):
    """Fronto-parallel plane at depth z, x translation b: u1 = u0 + f b / z (20 px)."""
    cam, _ = _stereo(f)
    T = Pose.from_Rt(torch.eye(3), torch.tensor([b, 0, 0]))
    depth = torch.full((480, 640), z)
    k0 = FIVE.clone()
    k1 = k0 + torch.tensor([f * b / z, 0])
    k1[:, 0] += torch.tensor(offsets, dtype=torch.float32)
    return k0, k1, depth, T, cam


def test_reprojection_precision_closed_form():
    k0, k1, depth, T, cam = _plane_scene([0.0, 0.5, 2.0, 4.0, 10.0])
    err, valid = M.reprojection_errors(k0, k1, depth, depth, T, cam, cam)
    assert valid.all()
    np.testing.assert_allclose(err.numpy(), [0, 0.5, 2, 4, 10], atol=1e-4)
    out = M.reprojection_precision(err, valid)
    assert out == {
        "reproj_prec@1px": pytest.approx(0.4),
        "reproj_prec@3px": pytest.approx(0.6),
        "reproj_prec@5px": pytest.approx(0.8),
    }


def test_reprojection_precision_ignores_unknown_depth():
    k0, k1, depth, T, cam = _plane_scene([0.0, 0.5, 2.0, 4.0, 10.0])
    depth0 = depth.clone()
    depth0[280:320, 0:80] = 0  # unknown around keypoint 2 (30, 300)
    out = M.reprojection_precision(
        *M.reprojection_errors(k0, k1, depth0, depth, T, cam, cam)
    )
    assert out["reproj_prec@1px"] == pytest.approx(0.5)  # 2 of the 4 valid matches
    out = M.reprojection_precision(
        *M.reprojection_errors(k0, k1, torch.zeros_like(depth), depth, T, cam, cam)
    )
    assert all(v == 0.0 for v in out.values())  # no valid match: 0, as upstream


def test_reprojection_behind_camera_is_wrong():
    """A point lifted behind the other camera: infinite error, still a valid match."""
    k0, k1, depth, _, cam = _plane_scene([0.0] * 5)
    T = Pose.from_Rt(
        torch.eye(3), torch.tensor([0.0, 0, -10])
    )  # camera 1 beyond the plane
    err, valid = M.reprojection_errors(k0, k1, depth, depth, T, cam, cam)
    assert valid.all() and torch.isinf(err).all()


# --------------------------------------------------------------------------------------
# Summaries


def test_summarize_names_carry_the_aggregation():
    results = {
        "prec@1px": [0.1, 0.2, 0.9],
        "epi_prec@1e-4": [0.5, math.nan, 0.7],
        "H_error_ransac": [0.2, 0.5, 1.5, 2.5, math.inf],
        "rel_pose_error": [1.0, 30.0],
    }
    out = M.summarize(results)
    assert out["median_prec@1px"] == pytest.approx(0.2)
    assert out["mean_prec@1px"] == pytest.approx(0.4)
    assert out["mean_epi_prec@1e-4"] == pytest.approx(0.6)  # NaN pairs ignored
    assert out["H_error_ransac@1px"] == pytest.approx(0.31)
    assert out["H_error_ransac@5px"] == pytest.approx(0.662)
    assert out["H_error_ransac_mAA"] == pytest.approx((0.31 + 0.57 + 0.662) / 3)
    # one error of 1 deg, one of 30 deg: AUC@5 = (.5*.5*1 + .5*4)/5 = 0.45
    assert out["rel_pose_error@5deg"] == pytest.approx(0.45)
    # standard error of the mean: std(ddof=1) / sqrt(n), over the non-NaN pairs
    assert out["sem_prec@1px"] == pytest.approx(
        np.std([0.1, 0.2, 0.9], ddof=1) / 3**0.5
    )
    assert out["sem_epi_prec@1e-4"] == pytest.approx(0.1)  # (0.5, 0.7)
    assert math.isnan(M.summarize({"x": [1.0, math.nan]})["sem_x"])  # one pair
    assert set(out) == {
        "mean_prec@1px", "median_prec@1px", "sem_prec@1px",
        "mean_epi_prec@1e-4", "median_epi_prec@1e-4", "sem_epi_prec@1e-4",
        "H_error_ransac@1px", "H_error_ransac@3px", "H_error_ransac@5px",
        "H_error_ransac_mAA",
        "rel_pose_error@5deg", "rel_pose_error@10deg", "rel_pose_error@20deg",
        "rel_pose_error_mAA",
    }  # fmt: skip
    rounded = M.summarize({"H_error_dlt": [0.123456]}, round=4)
    assert rounded["H_error_dlt@1px"] == round(1 - 0.123456 / 2, 4)


# --------------------------------------------------------------------------------------
# Per-pair convenience functions on (data, pred)


def _hpatches_pair(H):
    rng = np.random.default_rng(0)
    kp0 = torch.from_numpy(rng.uniform(0, 600, (60, 2))).float()
    q = torch.cat([kp0, torch.ones(60, 1)], -1) @ torch.from_numpy(H).float().T
    kp1 = (q[:, :2] / q[:, 2:]).flip(0)  # keypoint i of image 0 is 59 - i of image 1
    matches0 = torch.arange(59, -1, -1)
    matches0[50:] = -1
    scores = torch.where(matches0 > -1, 0.9, 0.0)
    data = {
        "H_0to1": torch.from_numpy(H)[None].float(),
        "view0": {"image": torch.zeros(1, 3, 480, 640)},
    }
    pred = {
        "keypoints0": kp0[None],
        "keypoints1": torch.cat([kp1, torch.zeros(5, 2)])[None],
        "matches0": matches0[None],
        "matching_scores0": scores[None],
    }
    return data, pred


def test_eval_homography_pair():
    H = np.array([[1.05, 0.02, 10], [-0.01, 0.98, 4], [1e-5, 2e-5, 1.0]])
    data, pred = _hpatches_pair(H)
    out = M.eval_matches_homography(data, pred)
    assert out == {
        "prec@1px": 1.0,
        "prec@3px": 1.0,
        "num_matches": 50.0,
        "num_keypoints": 62.5,
    }
    assert M.eval_homography_dlt(data, pred)["H_error_dlt"] < 1e-2
    robust = M.eval_homography_robust(data, pred, {"name": "poselib", "ransac_th": 1.0})
    assert robust["H_error_ransac"] < 1e-2
    assert robust["ransac_inl"] == 50 and robust["ransac_inl%"] == 1.0
    # a failed estimate is an infinite error
    pred["matches0"][0, 3:] = -1  # 3 matches
    assert (
        M.eval_homography_robust(data, pred, {"name": "opencv"})["H_error_ransac"]
        == math.inf
    )
    assert M.eval_homography_dlt(data, pred)["H_error_dlt"] == math.inf
    # the size comes from image_size when given
    data["view0"]["image_size"] = torch.tensor([[64.0, 48.0]])
    assert M.image_size(data["view0"]) == (64.0, 48.0)


def test_eval_relative_pose_pair():
    rng = np.random.default_rng(1)
    cam, _ = _stereo(800.0)
    T = Pose.from_Rt(torch.from_numpy(rot_z(5)).float(), torch.tensor([1.0, 0.1, 0.0]))
    X = torch.from_numpy(
        np.c_[rng.uniform(-1.5, 1.5, (80, 2)), rng.uniform(4, 8, 80)]
    ).float()
    k0, _ = cam.project(X)
    k1, _ = cam.project(T.transform(X))
    data = {
        "T_0to1": Pose(T._data[None]),
        "view0": {"camera": Camera(cam._data[None]), "depth": None},
        "view1": {"camera": Camera(cam._data[None])},
    }
    pred = {
        "keypoints0": k0[None],
        "keypoints1": k1[None],
        "matches0": torch.arange(80)[None],
    }
    out = M.eval_relative_pose(data, pred, {"name": "poselib", "ransac_th": 1.0})
    assert out["rel_pose_error"] < 0.05 and out["ransac_inl"] == 80
    epi = M.eval_matches_epipolar(data, pred)
    assert epi["epi_prec@1e-4"] == 1.0 and epi["num_matches"] == 80.0
    pred["matches0"][0, 3:] = -1
    assert (
        M.eval_relative_pose(data, pred, {"name": "opencv"})["rel_pose_error"]
        == math.inf
    )


def test_eval_matches_depth_pair():
    k0, k1, depth, T, cam = _plane_scene([0.0, 0.5, 2.0, 4.0, 10.0])
    data = {
        "T_0to1": T,
        "view0": {"camera": cam, "depth": depth[None]},
        "view1": {"camera": cam, "depth": depth[None]},
    }
    pred = {"keypoints0": k0, "keypoints1": k1, "matches0": torch.arange(5)}
    out = M.eval_matches_depth(data, pred)
    assert out["reproj_prec@3px"] == pytest.approx(0.6)
    assert out["covisible"] == 5.0 and out["covisible_percent"] == pytest.approx(100.0)
    data["view0"]["depth"] = torch.where(torch.arange(640) < 100, 0.0, depth)[None]
    out = M.eval_matches_depth(data, pred)  # keypoints 0, 2 and 4 have x < 100
    assert out["covisible"] == 2.0 and out["covisible_percent"] == pytest.approx(40.0)


def test_per_pair_functions_take_one_pair_or_a_batch_of_one():
    """The one rule for dropping a batch dimension (utils.tensor.unbatch)."""
    H = np.array([[1.05, 0.02, 10], [-0.01, 0.98, 4], [1e-5, 2e-5, 1.0]])
    data, pred = _hpatches_pair(H)
    batched = M.eval_matches_homography(data, pred)
    single = {k: v[0] for k, v in pred.items()}
    data1 = {**data, "H_0to1": data["H_0to1"][0]}
    assert M.eval_matches_homography(data1, single) == batched
    two = {k: torch.cat([v, v]) for k, v in pred.items()}
    with pytest.raises(InputError, match="'keypoints0'.*batch of 2"):
        M.eval_matches_homography(data, two)
