"""Homography utilities: closed-form warps, round trips, OpenCV parity, the sampler,
the point and line DLT."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gluefactory.geometry.homography import (
    dlt_null_vector,
    homography_dlt_rows,
    homography_from_center_convention,
    homography_from_points,
    homography_to_center_convention,
    is_convex,
    normalize_homography,
    rescale_homography,
    sample_homography_corners,
    segment_lines,
    sym_homography_error,
    warp_image,
    warp_lines,
    warp_points,
    warp_points_numpy,
)


def _translation(tx, ty):
    return torch.tensor([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]], dtype=torch.float64)


def test_identity_and_translation_closed_form():
    pts = torch.tensor([[0.5, 0.5], [10.0, 20.0], [639.0, 479.5]], dtype=torch.float64)
    torch.testing.assert_close(warp_points(pts, torch.eye(3, dtype=torch.float64)), pts)
    H = _translation(3.0, -2.0)
    torch.testing.assert_close(
        warp_points(pts, H), pts + torch.tensor([3.0, -2.0]).double()
    )
    torch.testing.assert_close(
        warp_points(pts, H, inverse=True), pts - torch.tensor([3.0, -2.0]).double()
    )
    assert (
        sym_homography_error(pts, pts + torch.tensor([3.0, -2.0]).double(), H).max()
        < 1e-12
    )


def test_projective_closed_form():
    H = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0.01, 0, 1.0]])
    p = torch.tensor([[100.0, 50.0]])  # w = 0.01 * 100 + 1 = 2
    torch.testing.assert_close(warp_points(p, H), torch.tensor([[100.0, 50.0]]))


def test_points_at_infinity_stay_finite():
    H = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.01, 0, 1.0]])
    p = torch.tensor([[-100.0, 5.0], [-100.0 + 1e-9, 5.0], [3.0, 4.0]])
    out = warp_points(p, H)
    assert torch.isfinite(out).all()
    assert out[0].abs().max() > 1e6  # pushed far away, not NaN
    np_out = warp_points_numpy(
        p.numpy().astype(np.float64), H.numpy().astype(np.float64)
    )
    assert np.isfinite(np_out).all()


def _random_H(seed: int) -> torch.Tensor:
    H, _ = sample_homography_corners(
        (640, 480), (640, 480), 0.7, 1.0, 45, 10, 0.05, seed
    )
    return torch.from_numpy(H)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_warp_then_inverse_is_identity(seed):
    H = _random_H(seed)
    g = torch.Generator().manual_seed(seed)
    pts = (
        torch.rand(50, 2, generator=g, dtype=torch.float64)
        * torch.tensor([640.0, 480.0]).double()
    )
    back = warp_points(warp_points(pts, H), torch.linalg.inv(H))
    torch.testing.assert_close(back, pts, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        warp_points(warp_points(pts, H), H, inverse=True), pts, atol=1e-6, rtol=0
    )


def test_warp_lines_endpoints_and_collinearity():
    H = _random_H(3)
    seg = torch.tensor(
        [[[10.0, 20.0], [300.0, 200.0]], [[50.0, 400.0], [600.0, 30.0]]]
    ).double()
    w = warp_lines(seg, H)
    torch.testing.assert_close(w[:, 0], warp_points(seg[:, 0], H))
    mid = warp_points(seg.mean(1), H)  # the midpoint's image stays on the warped line
    d0, d1 = w[:, 1] - w[:, 0], mid - w[:, 0]
    cross = d0[:, 0] * d1[:, 1] - d0[:, 1] * d1[:, 0]
    assert (cross.abs() / d0.norm(dim=-1) < 1e-6).all()
    with pytest.raises(ValueError, match="segments"):
        warp_lines(torch.zeros(3, 2), H)


def test_rescale_homography():
    H = _random_H(5)
    s0, s1 = torch.tensor([0.5, 0.25]).double(), 2.0
    Hs = rescale_homography(H, s0, s1)
    pts = torch.tensor([[10.0, 20.0], [300.0, 200.0]]).double()
    torch.testing.assert_close(warp_points(pts * s0, Hs), warp_points(pts, H) * s1)
    torch.testing.assert_close(rescale_homography(H), H)


def test_dlt_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    src = np.array([[10.0, 20.0], [500.0, 40.0], [620.0, 400.0], [30.0, 450.0]])
    dst = np.array([[0.0, 0.0], [640.0, 0.0], [640.0, 480.0], [0.0, 480.0]])
    H = homography_from_points(src, dst)
    ref = cv2.findHomography(src, dst, 0)[0]
    np.testing.assert_allclose(H, ref / ref[2, 2], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(warp_points_numpy(src, H), dst, atol=1e-8)
    Ht = homography_from_points(torch.from_numpy(src), torch.from_numpy(dst))
    np.testing.assert_allclose(Ht.numpy(), H, atol=1e-12)


def test_center_convention_roundtrip():
    H = _random_H(7)
    Hc = homography_to_center_convention(H)
    p = torch.tensor([[10.5, 3.5]]).double()
    torch.testing.assert_close(warp_points(p - 0.5, Hc) + 0.5, warp_points(p, H))
    torch.testing.assert_close(homography_from_center_convention(Hc), H)
    torch.testing.assert_close(normalize_homography(3 * H), H)


def test_warp_image_integer_translation_is_exact():
    img = torch.rand(2, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    out, mask = warp_image(img, _translation(3, 2).float(), return_mask=True)
    torch.testing.assert_close(out[..., 2:, 3:], img[..., :-2, :-3])
    assert not mask[:, :2].any() and not mask[:, :, :3].any() and mask[:, 2:, 3:].all()
    out = warp_image(img[0], torch.eye(3), size=(15, 10))
    torch.testing.assert_close(out, img[0, :, :10, :15])


def test_warp_image_matches_opencv_on_real_photo(homography_pair):
    """Our grid_sample warp (library convention) vs cv2.warpPerspective (centres)."""
    img0, img1, H = (
        homography_pair["image0"],
        homography_pair["image1"],
        homography_pair["H_0to1"],
    )
    ours, mask = warp_image(img0, H, return_mask=True)
    # cv2 rounds to uint8 and interpolates in fixed point: compare away from the borders
    inner = torch.nn.functional.max_pool2d((~mask).float()[:, None], 5, 1, 2)[:, 0] == 0
    diff = (ours - img1).abs().mean(1)[inner]
    assert inner.sum() > 0.5 * inner.numel()
    assert diff.mean() < 2.0 / 255 and diff.max() < 8.0 / 255


def test_is_convex_closed_form():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    assert is_convex(square, 0.05) and is_convex(square[::-1], 0.05)
    assert not is_convex(np.array([[0, 0], [1, 1], [1, 0], [0, 1.0]]))  # bow tie
    assert not is_convex(np.array([[0, 0], [1, 0], [0.3, 0.3], [0, 1.0]]))  # dart
    assert not is_convex(square * 0.1, 0.05)  # too thin margin


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    difficulty=st.floats(0.0, 0.9),
    max_angle=st.floats(0.0, 90.0),
    translation=st.floats(0.0, 1.0),
    w=st.integers(64, 1200),
    h=st.integers(64, 1200),
)
def test_sampler_yields_convex_in_bounds_quads(
    seed, difficulty, max_angle, translation, w, h
):
    H, quad = sample_homography_corners(
        (w, h),
        (640, 480),
        difficulty,
        translation,
        max_angle,
        10,
        0.05,
        np.random.default_rng(seed),
    )
    assert is_convex(quad / [w, h])
    assert (quad >= 0).all() and (quad <= [w, h]).all()
    corners = np.array([[0.0, 0.0], [640, 0], [640, 480], [0, 480]])
    np.testing.assert_allclose(warp_points_numpy(quad, H), corners, atol=1e-6)


def test_sampler_reproducible_and_difficulty_zero():
    a = sample_homography_corners((640, 480), (320, 240), rng=np.random.default_rng(1))
    b = sample_homography_corners((640, 480), (320, 240), rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    c = sample_homography_corners((640, 480), (320, 240), rng=np.random.RandomState(1))
    d = sample_homography_corners((640, 480), (320, 240), rng=np.random.RandomState(1))
    np.testing.assert_array_equal(c[1], d[1])
    H, quad = sample_homography_corners((640, 480), (320, 240), difficulty=0.0, rng=0)
    np.testing.assert_allclose(H, np.diag([0.5, 0.5, 1.0]), atol=1e-12)
    with pytest.raises(ValueError, match="difficulty"):
        sample_homography_corners((640, 480), (320, 240), difficulty=1.0)


def test_sampler_rotates_up_to_max_angle():
    """Over many draws, the quad's top edge spans about +-max_angle * difficulty."""
    angles = []
    rng = np.random.default_rng(0)
    for _ in range(300):
        _, q = sample_homography_corners(
            (640, 480), (640, 480), 0.7, 1.0, 45, 10, 0.05, rng
        )
        e = q[1] - q[0]
        angles.append(np.degrees(np.arctan2(e[1], e[0])))
    angles = np.array(angles)
    assert angles.max() > 20 and angles.min() < -20
    # corner offsets add at most ~atan(0.35 / 0.3) on top of the 31.5 deg rotation
    assert np.abs(angles).max() < 31.5 + 50


# --------------------------------------------------------------------------------------
# Point and line DLT


#: a homography of the unit square (the DLT is for normalised coordinates)
H_PL = np.array([[0.9, 0.08, 0.1], [-0.05, 0.95, 0.05], [0.1, -0.05, 1.0]])


def _warp_np(p):
    return warp_points_numpy(p, H_PL)


def test_segment_lines_give_signed_distances():
    seg = np.array([[[0.0, 0.0], [10.0, 0.0]], [[1.0, 1.0], [4.0, 5.0]]])
    lines = segment_lines(seg)
    np.testing.assert_allclose(np.linalg.norm(lines[:, :2], axis=-1), 1.0)
    # (3, 2) is 2 above the x axis; (4, 1) lies 3 along the normal of the second line
    d = (lines * np.array([[3.0, 2.0, 1.0], [1.0 + 4.0, 1.0 - 3.0, 1.0]])).sum(-1)
    np.testing.assert_allclose(np.abs(d), [2.0, 5.0])
    ends = np.concatenate([seg, np.ones((2, 2, 1))], -1)
    np.testing.assert_allclose((lines[:, None] * ends).sum(-1), 0, atol=1e-12)
    assert np.isnan(segment_lines(np.zeros((2, 2)))).all()


def test_dlt_rows_vanish_at_the_true_homography():
    rng = np.random.default_rng(0)
    p0 = rng.uniform(0, 1, (5, 2))
    s0 = rng.uniform(0, 1, (3, 2, 2))
    # segment 1: another piece of the mapped line
    s1 = _warp_np(
        (s0[:, :1] + [[-0.3], [1.4]] * (s0[:, 1:] - s0[:, :1])).reshape(-1, 2)
    )
    rows = homography_dlt_rows(p0, _warp_np(p0), s0, segment_lines(s1.reshape(3, 2, 2)))
    assert rows.shape == (8, 2, 9)
    np.testing.assert_allclose(rows @ H_PL.reshape(9), 0, atol=1e-12)
    # batched over leading dimensions
    both = homography_dlt_rows(
        np.stack([p0, p0]),
        np.stack([_warp_np(p0)] * 2),
        s0[None, :0],
        np.zeros((2, 0, 3)),
    )
    assert both.shape == (2, 5, 2, 9)


@pytest.mark.parametrize("n_points", [0, 2, 4, 6])
def test_dlt_null_vector_recovers_h_from_points_and_lines(n_points):
    rng = np.random.default_rng(n_points)
    p0 = rng.uniform(0, 1, (n_points, 2))
    m = max(4 - n_points, 0) + 1
    s0 = rng.uniform(0, 1, (m, 2, 2))
    l1 = segment_lines(_warp_np(s0.reshape(-1, 2)).reshape(m, 2, 2))
    h, cond = dlt_null_vector(
        homography_dlt_rows(p0, _warp_np(p0), s0, l1).reshape(-1, 9)
    )
    assert cond > 1e-6
    np.testing.assert_allclose(h.reshape(3, 3) / h[-1], H_PL, rtol=1e-8, atol=1e-10)


def test_dlt_null_vector_minimal_and_degenerate():
    rng = np.random.default_rng(1)
    p0 = rng.uniform(0, 1, (2, 4, 2))
    p0[1, :, 1] = 0.5  # the second sample is collinear
    rows = homography_dlt_rows(
        p0,
        _warp_np(p0.reshape(-1, 2)).reshape(2, 4, 2),
        np.zeros((2, 0, 2, 2)),
        np.zeros((2, 0, 3)),
    )
    h, cond = dlt_null_vector(rows.reshape(2, 8, 9))
    assert cond[0] > 1e-4 and cond[1] < 1e-12
    np.testing.assert_allclose(h[0].reshape(3, 3) / h[0, -1], H_PL, rtol=1e-8)
