"""Ground-truth labelling rules (facts 4.3) on closed-form configurations."""

from __future__ import annotations

import pytest
import torch

from gluefactory.geometry.gt_generation import (
    IGNORE,
    UNMATCHED,
    gt_matches_from_homography,
    gt_matches_from_pose_depth,
    labels_from_distances,
)
from gluefactory.geometry.wrappers import Camera, Pose


def _translation(tx, ty):
    return torch.tensor([[[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]]])


def test_identity_homography_recovers_permutation():
    g = torch.Generator().manual_seed(0)
    k0 = torch.rand(1, 40, 2, generator=g) * 500
    perm = torch.randperm(40, generator=g)
    k1 = k0[:, perm] + (torch.rand(1, 40, 2, generator=g) - 0.5) * 0.5
    out = gt_matches_from_homography(k0, k1, torch.eye(3)[None])
    expected = torch.argsort(perm)  # k0[i] went to position inv_perm[i]
    assert torch.equal(out["matches0"][0], expected)
    assert torch.equal(out["matches1"][0], perm)
    assert out["assignment"].sum() == 40
    assert torch.equal(out["matching_scores0"], torch.ones(1, 40))


def test_translation_positive_ignored_unmatched():
    """th_pos 3, th_neg 5: 1 px off -> positive, 4 px -> ignored, 50 px -> unmatched"""
    H = _translation(10.0, -5.0)
    k0 = torch.tensor([[[100.0, 100.0], [200.0, 100.0], [300.0, 100.0]]])
    k1 = torch.tensor([[[110.0, 96.0], [210.0 + 4.0, 95.0], [400.0, 300.0]]])
    out = gt_matches_from_homography(k0, k1, H, th_positive=3, th_negative=5)
    assert out["matches0"][0].tolist() == [0, IGNORE, UNMATCHED]
    assert out["matches1"][0].tolist() == [0, IGNORE, UNMATCHED]
    assert out["matching_scores0"][0].tolist() == [1.0, 0.0, 0.0]


def test_symmetric_distance_uses_the_max_of_both_directions():
    """Zoom: 2 px off in image 1 is 1 px in image 0; the max must be under th."""
    H = torch.diag(torch.tensor([2.0, 2.0, 1.0]))[None]
    k0 = torch.tensor([[[100.0, 100.0]]])
    out = gt_matches_from_homography(k0, torch.tensor([[[202.0, 200.0]]]), H, 1.5, 3.0)
    assert out["matches0"].item() == IGNORE  # forward 2 px > 1.5 although backward 1 px
    out = gt_matches_from_homography(k0, torch.tensor([[[201.0, 200.0]]]), H, 1.5, 1.5)
    assert out["matches0"].item() == 0


def test_mutual_nearest_neighbour_only():
    k0 = torch.tensor([[[100.0, 100.0], [101.0, 100.0]]])
    k1 = torch.tensor([[[100.8, 100.0]]])
    out = gt_matches_from_homography(k0, k1, torch.eye(3)[None])
    assert out["matches0"][0].tolist() == [
        IGNORE,
        0,
    ]  # both within 3 px, only the NN wins
    assert out["matches1"][0].tolist() == [1]


def test_padding_is_ignored_and_does_not_change_the_rest():
    g = torch.Generator().manual_seed(1)
    k0 = torch.rand(1, 10, 2, generator=g) * 100
    k1 = k0[:, :7] + 0.3
    single = gt_matches_from_homography(k0, k1, torch.eye(3)[None])
    pad1 = torch.cat([k1, torch.full((1, 3, 2), float("nan"))], 1)
    padded = gt_matches_from_homography(k0, pad1, torch.eye(3)[None])
    assert torch.equal(padded["matches0"], single["matches0"])
    assert padded["matches1"][0, 7:].tolist() == [IGNORE] * 3
    mask1 = torch.tensor([[True] * 7 + [False] * 3])
    pad1 = torch.cat([k1, k0[:, :3]], 1)  # padded with copies of real points
    masked = gt_matches_from_homography(k0, pad1, torch.eye(3)[None], mask1=mask1)
    assert torch.equal(masked["matches0"], single["matches0"])
    assert masked["matches1"][0, 7:].tolist() == [IGNORE] * 3


def test_empty_keypoints():
    out = gt_matches_from_homography(
        torch.zeros(1, 0, 2), torch.rand(1, 5, 2), torch.eye(3)[None]
    )
    assert out["assignment"].shape == (1, 0, 5)
    assert out["matches1"][0].tolist() == [UNMATCHED] * 5


def _dense_labels(dist0, dist1, pair_ok, neg0, neg1, th_pos, th_neg):
    """The labelling rule written densely: (B, M, N) mutual-argmin masks."""
    dist = torch.where(pair_ok, torch.maximum(dist0, dist1), torch.inf)
    ismin0 = torch.zeros_like(pair_ok).scatter_(-1, dist.argmin(-1, keepdim=True), True)
    ismin1 = torch.zeros_like(pair_ok).scatter_(-2, dist.argmin(-2, keepdim=True), True)
    pos = ismin0 & ismin1 & (dist < th_pos**2)
    out = {"assignment": pos}
    for i, (p, d, neg) in enumerate(
        ((pos, dist0, neg0), (pos.transpose(1, 2), dist1.transpose(1, 2), neg1))
    ):
        m = torch.where(neg & (d.min(-1).values > th_neg**2), UNMATCHED, IGNORE)
        out[f"matches{i}"] = torch.where(p.any(-1), p.long().argmax(-1), m)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_labels_equal_the_dense_rule_with_ties_and_masks(seed):
    """Per-point nearest-neighbour indices give the dense rule's labels exactly, also
    with tied distances (integer grid coordinates), padding and inf rows."""
    g = torch.Generator().manual_seed(seed)
    b, m, n = 3, 37, 29
    k0 = torch.randint(0, 12, (b, m, 2), generator=g).float()
    k1 = torch.randint(0, 12, (b, n, 2), generator=g).float()
    shift = torch.randint(-1, 2, (b, 1, 2), generator=g).float()
    d0 = (k0[:, :, None] + shift[:, :, None] - k1[:, None]).square().sum(-1)
    d1 = (k0[:, :, None] - (k1[:, None] - shift[:, :, None])).square().sum(-1)
    valid0 = torch.rand(b, m, generator=g) > 0.2
    valid1 = torch.rand(b, n, generator=g) > 0.2
    ok = valid0[:, :, None] & valid1[:, None] & (torch.rand(b, m, n, generator=g) > 0.1)
    d0 = torch.where(ok, d0, torch.inf)
    d1 = torch.where(ok, d1, torch.inf)
    out = labels_from_distances(d0, d1, ok, valid0, valid1, 2.0, 3.0)
    ref = _dense_labels(d0, d1, ok, valid0, valid1, 2.0, 3.0)
    assert out["matches0"].ge(0).any()
    for k, v in ref.items():
        assert torch.equal(out[k], v), k


def test_thresholds_must_be_ordered():
    d = torch.zeros(1, 1, 1)
    ok = torch.ones(1, 1, 1, dtype=torch.bool)
    with pytest.raises(ValueError, match="th_negative"):
        labels_from_distances(d, d, ok, ok[0], ok[0], 5.0, 3.0)


def _stereo(w=400, h=300, f=300.0, baseline=1.0):
    cam = Camera.from_params(w, h, f, f, w / 2, h / 2)[None]
    T = Pose.from_Rt(torch.eye(3), torch.tensor([-baseline, 0.0, 0.0]))[None]
    return cam, T


def test_depth_closed_form_stereo():
    """Plane at z = 10, baseline 1, f = 300: disparity 30 px."""
    cam, T = _stereo()
    depth = torch.full((1, 300, 400), 10.0)
    k0 = torch.tensor([[[100.5, 50.5], [200.5, 80.5], [300.5, 200.5], [10.5, 10.5]]])
    k1 = torch.tensor([[[70.5, 50.5], [170.5 + 4.0, 80.5], [100.0, 250.0]]])
    out = gt_matches_from_pose_depth(
        k0,
        k1,
        cam,
        cam,
        T,
        depth0=depth,
        depth1=depth,
        th_positive=3,
        th_negative=5,
        th_epi=None,
    )
    # 0 positive; 1 is 4 px off (ignored); 2 and 3 project far from every keypoint
    # (3 leaves the right image at x = -19.5)
    assert out["matches0"][0].tolist() == [0, IGNORE, UNMATCHED, UNMATCHED]
    assert out["matches1"][0].tolist() == [0, IGNORE, UNMATCHED]


def test_depth_no_depth_is_ignored_unless_epipolar():
    """Unknown depth: ignored; with th_epi, unmatched when off every epipolar line.

    Rectified stereo (K0 = K1, pure x translation): the symmetric epipolar distance in
    pixels is |y0 - y1|. Here it is 4 px: th_epi 3 -> unmatched, th_epi 5 -> ignored,
    with th_negative fixed at 5 (upstream would compare 4 against th_negative).
    """
    cam, T = _stereo()
    depth = torch.zeros(1, 300, 400)
    k0 = torch.tensor([[[100.5, 50.5]]])
    k1 = torch.tensor([[[60.5, 54.5]]])
    kw = dict(depth0=depth, depth1=depth, th_positive=3, th_negative=5)
    out = gt_matches_from_pose_depth(k0, k1, cam, cam, T, th_epi=None, **kw)
    assert out["matches0"].item() == IGNORE and out["matches1"].item() == IGNORE
    out = gt_matches_from_pose_depth(k0, k1, cam, cam, T, th_epi=3.0, **kw)
    assert out["matches0"].item() == UNMATCHED and out["matches1"].item() == UNMATCHED
    out = gt_matches_from_pose_depth(k0, k1, cam, cam, T, th_epi=5.0, **kw)
    assert out["matches0"].item() == IGNORE and out["matches1"].item() == IGNORE


def test_depth_cached_keypoint_depths_equal_sampling():
    cam, T = _stereo()
    depth = torch.full((1, 300, 400), 10.0)
    depth[:, :, 250:] = 0
    g = torch.Generator().manual_seed(0)
    k0 = torch.rand(1, 30, 2, generator=g) * torch.tensor([400.0, 300.0])
    k1 = k0 - torch.tensor([30.0, 0.0])
    a = gt_matches_from_pose_depth(k0, k1, cam, cam, T, depth0=depth, depth1=depth)
    d0 = torch.where(k0[..., 0] < 250, 10.0, 0.0)
    d1 = torch.where(k1[..., 0] < 250, 10.0, 0.0)
    b = gt_matches_from_pose_depth(
        k0,
        k1,
        cam,
        cam,
        T,
        depth_keypoints0=(d0, d0 > 0),
        depth_keypoints1=(d1, d1 > 0),
    )
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="view0.depth"):
        gt_matches_from_pose_depth(k0, k1, cam, cam, T)
