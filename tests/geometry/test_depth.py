"""Depth sampling, reprojection, visibility: closed-form scenes, the Middlebury pair."""

from __future__ import annotations

import numpy as np
import torch

from gluefactory.geometry.depth import (
    covisibility,
    overlap,
    project,
    render_depth,
    reproject,
    sample_depth,
)
from gluefactory.geometry.wrappers import Camera, Pose

W, H = 64, 48


def _cam():
    return Camera.from_params(W, H, 50.0, 50.0, 32.0, 24.0, dtype=torch.float64)


def _ramp():
    """Depth linear in x: d(x, y) = 2 + 0.1 x at pixel centres."""
    xs = torch.arange(W, dtype=torch.float64) + 0.5
    return (2 + 0.1 * xs).expand(H, W).clone()


def test_bilinear_is_exact_on_a_linear_ramp():
    k = torch.tensor([[10.3, 5.7], [0.5, 0.5], [33.9, 40.2]], dtype=torch.float64)
    d, v = sample_depth(k, _ramp())
    assert v.all()
    torch.testing.assert_close(d, 2 + 0.1 * k[:, 0])


def test_holes_fall_back_to_nearest_and_invalid():
    depth = _ramp()
    depth[5, 10] = 0.0  # hole at the pixel with centre (10.5, 5.5)
    depth[20, 20] = float("nan")
    k = torch.tensor(
        [
            [11.2, 5.4],
            [10.4, 5.6],
            [20.5, 20.5],
            [-1.0, 3.0],
            [70.0, 3.0],
            [float("nan"), 1.0],
            [30.0, 30.0],
        ],
        dtype=torch.float64,
    )
    d, v = sample_depth(k, depth)
    # (11.2, 5.4) touches the hole in its 2x2 bilinear support -> nearest pixel (11, 5)
    assert v[0] and d[0].item() == depth[5, 11].item()
    assert not v[1] and not v[2]  # inside a hole
    assert not v[3] and not v[4] and not v[5]  # outside, non-finite
    assert v[6] and d[6].item() == 2 + 0.1 * 30.0
    assert (d[~v] == 0).all()


def test_batched_sampling_matches_unbatched():
    depth = torch.stack([_ramp(), 2 * _ramp()])
    k = torch.rand(2, 10, 2, dtype=torch.float64) * torch.tensor([W, H])
    d, v = sample_depth(k, depth)
    for b in range(2):
        db, vb = sample_depth(k[b], depth[b])
        torch.testing.assert_close(d[b], db)
        assert torch.equal(v[b], vb)


def test_fronto_parallel_plane_translation_closed_form():
    """Plane at z = 5, camera moved by tx: pixels shift by -f tx / z."""
    cam = _cam()
    depth = torch.full((H, W), 5.0, dtype=torch.float64)
    T = Pose.from_Rt(
        torch.eye(3, dtype=torch.float64), torch.tensor([-0.5, 0, 0]).double()
    )
    k = torch.tensor([[20.5, 10.5], [60.0, 30.0], [2.0, 2.0]], dtype=torch.float64)
    k1, vis = project(k, depth, None, T, cam, cam)
    torch.testing.assert_close(k1, k - torch.tensor([5.0, 0.0]).double())
    assert vis.tolist() == [True, True, False]  # the last one leaves the image


def test_occlusion_and_cycle_consistency():
    cam = _cam()
    T = Pose.from_Rt(
        torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    )
    k = torch.tensor([[20.5, 10.5], [40.5, 30.5]], dtype=torch.float64)
    d0 = torch.tensor([10.0, 4.0], dtype=torch.float64)
    depth1 = torch.full(
        (H, W), 4.0, dtype=torch.float64
    )  # a wall at 4 in front of z=10
    ok = torch.ones(2, dtype=torch.bool)
    _, vis = reproject(k, d0, ok, T, cam, cam)
    assert vis.all()
    _, vis = reproject(k, d0, ok, T, cam, cam, depth1, occlusion_tol=0.05)
    assert vis.tolist() == [False, True]
    _, vis = reproject(k, d0, ok, T, cam, cam, depth1, th_consistency=1.0)
    assert vis.tolist() == [
        True,
        True,
    ]  # identity pose: cycle closes whatever the depth
    T = Pose.from_Rt(
        torch.eye(3, dtype=torch.float64), torch.tensor([-1.0, 0, 0]).double()
    )
    _, vis = reproject(k, d0, ok, T, cam, cam, depth1, th_consistency=1.0)
    assert vis.tolist() == [
        False,
        True,
    ]  # lifted with the wrong depth, it comes back off


def test_render_depth_of_a_plane():
    cam = _cam()
    depth0 = torch.full((H, W), 5.0, dtype=torch.float64)
    T = Pose.from_Rt(
        torch.eye(3, dtype=torch.float64), torch.tensor([-0.5, 0, 0]).double()
    )
    d1 = render_depth(depth0, cam, cam, T)
    assert d1.shape == (H, W)
    assert torch.all(d1[:, : W - 6] == 5.0)  # shifted left by 5 px
    assert torch.all(d1[:, W - 4 :] == 0)  # unseen in view 0


def _middlebury(pair):
    disp = pair["disparity"].double()
    known = torch.isfinite(disp)
    depth = torch.where(
        known, pair["baseline"] * pair["f"] / (disp + pair["doffs"]), 0.0
    )
    f, cx, cy = pair["f"], pair["cx"], pair["cy"]
    h, w = disp.shape
    cam0 = Camera.from_params(w, h, f, f, cx + 0.5, cy + 0.5, dtype=torch.float64)
    cam1 = Camera.from_params(
        w, h, f, f, cx + pair["doffs"] + 0.5, cy + 0.5, dtype=torch.float64
    )
    T = Pose.from_Rt(
        torch.eye(3).double(), torch.tensor([-pair["baseline"], 0, 0]).double()
    )
    return disp, depth, cam0, cam1, T


def test_middlebury_projection_equals_disparity(motorcycle_pair):
    """Left pixels lifted with depth = B f / (d + doffs) land at x - d on the right."""
    disp, depth, cam0, cam1, T = _middlebury(motorcycle_pair)
    assert depth.shape == (500, 741)
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 500, 200), rng.integers(0, 741, 200)
    k = (
        torch.from_numpy(np.stack([xs, ys], -1)).double() + 0.5
    )  # pixel centres: exact depth
    k1, vis = project(k, depth, None, T, cam0, cam1)
    d = disp[ys, xs]
    known = torch.isfinite(d)
    assert known.sum() > 150
    inside = known & (k[:, 0] - d >= 0)
    assert torch.equal(vis, inside)
    expected = torch.stack([k[:, 0] - d, k[:, 1]], -1)
    torch.testing.assert_close(k1[known], expected[known], atol=1e-4, rtol=0)


def test_middlebury_rendered_right_depth_is_consistent(motorcycle_pair):
    disp, depth, cam0, cam1, T = _middlebury(motorcycle_pair)
    depth1 = render_depth(depth, cam0, cam1, T)
    valid = depth1 > 0
    assert valid.float().mean() > 0.85
    # right-view points lifted with the rendered depth land at x + d in the left view
    ys, xs = torch.nonzero(valid, as_tuple=True)
    sel = torch.randperm(len(ys), generator=torch.Generator().manual_seed(0))[:500]
    k1 = torch.stack([xs[sel], ys[sel]], -1).double() + 0.5
    k0, vis = project(k1, depth1, depth, T.inv(), cam1, cam0, th_consistency=1.0)
    assert vis.float().mean() > 0.9
    # cycle consistent points: the left view's disparity at the landing point maps back
    ix = torch.floor(k0[vis]).long()
    back = k0[vis][:, 0] - disp[ix[:, 1], ix[:, 0]]
    assert (back - k1[vis][:, 0]).abs().median() < 0.5


# ------------------------------------------------------- covisibility and overlap
def _plane(z=4.0):
    return torch.full((H, W), z, dtype=torch.float64)


def _shift(tx):
    return Pose.from_Rt(torch.eye(3, dtype=torch.float64), torch.tensor([tx, 0, 0.0]))


def test_same_view_is_fully_covisible_and_overlapping():
    cam, T = _cam(), _shift(0.0)
    assert covisibility(_plane(), _plane(), T, cam, cam) == 1.0
    assert overlap(_plane(), _plane(), T, cam, cam) == 1.0


def test_a_shift_moves_part_of_the_view_out():
    """A fronto-parallel plane at z = 4 seen after a sideways move by 2.56 units: the
    image moves by 50 * 2.56 / 4 = 32 px, so the grid columns x < 32 leave view 1."""
    cam = _cam()
    T = _shift(2.56)
    kept = sum(1 for x in range(4, W, 8) if x + 0.5 + 32 < W) / len(range(4, W, 8))
    assert covisibility(_plane(), _plane(), T, cam, cam) == kept == 0.5
    assert overlap(_plane(), _plane(), T, cam, cam) == kept


def test_unknown_depth_counts_against_covisibility_not_overlap():
    cam, T = _cam(), _shift(0.0)
    depth0 = _plane()
    depth0[:, : W // 2] = 0  # the left half of view 0 is unknown
    assert covisibility(depth0, _plane(), T, cam, cam) == 0.5
    assert overlap(depth0, _plane(), T, cam, cam) == 1.0
    assert overlap(torch.zeros(H, W, dtype=torch.float64), _plane(), T, cam, cam) == 0
    # view 1's depth must be known (and agree) for the overlap, not for covisibility
    assert overlap(_plane(), torch.zeros_like(_plane()), T, cam, cam) == 0
    assert covisibility(_plane(), torch.zeros_like(_plane()), T, cam, cam) == 1.0


def test_occluders_and_depth_disagreement():
    cam, T = _cam(), _shift(0.0)
    near = _plane(2.0)  # view 1 sees a surface in front of view 0's points
    assert covisibility(_plane(), near, T, cam, cam, tol=0.02) == 0
    assert overlap(_plane(), near, T, cam, cam) == 0
    slightly = _plane(4.0 * 1.04)  # within overlap's 5 %
    assert overlap(_plane(), slightly, T, cam, cam, tol=0.05) == 1.0
    assert overlap(_plane(), slightly, T, cam, cam, tol=0.03) == 0
