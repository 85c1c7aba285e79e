"""Line geometry and GlueStick's line ground truth on hand-made cases (facts 4.3)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gluefactory.geometry.gt_generation import (
    gt_line_matches_from_homography,
    gt_line_matches_from_pose_depth,
)
from gluefactory.geometry.homography import warp_lines
from gluefactory.geometry.lines import (
    close_sample_counts,
    line_labels,
    merge_endpoints,
    point_segment_distances,
    sample_on_lines,
)
from gluefactory.geometry.wrappers import Camera, Pose

SIZE = torch.tensor([640.0, 480.0])


def seg(*xy) -> torch.Tensor:
    return torch.tensor(xy, dtype=torch.float64).reshape(2, 2)


def batch(*segs) -> torch.Tensor:
    return torch.stack(segs)[None]


def homography_gt(lines0, lines1, H=None, **kw):
    H = torch.eye(3, dtype=torch.float64)[None] if H is None else H
    return gt_line_matches_from_homography(lines0, lines1, H, SIZE, SIZE, **kw)


# ----------------------------------------------------------------- primitives
def test_samples_include_the_endpoints_evenly():
    pts = sample_on_lines(batch(seg(0, 0, 10, 20)), 11)[0, 0]
    assert torch.allclose(pts[0], torch.tensor([0.0, 0], dtype=pts.dtype))
    assert torch.allclose(pts[-1], torch.tensor([10.0, 20], dtype=pts.dtype))
    assert torch.allclose(pts[1:] - pts[:-1], torch.tensor([1.0, 2], dtype=pts.dtype))


def test_point_segment_distances():
    lines = batch(seg(0, 0, 10, 0), seg(5, 5, 5, 5))  # the second is degenerate
    pts = torch.tensor([[[5.0, 3.0], [12.0, -4.0], [0.0, 0.0]]], dtype=torch.float64)
    dist, on = point_segment_distances(pts, lines)
    assert torch.allclose(dist[0, :, 0], torch.tensor([3.0, 4.0, 0.0]).double())
    assert on[0, :, 0].tolist() == [True, False, True]
    assert not on[0, :, 1].any()  # nothing lies on a zero-length segment


def test_merge_endpoints_is_dbscan_with_one_sample():
    """Connected components of the 'at most r apart' graph, brute-force checked."""
    rng = np.random.default_rng(0)
    pts = torch.from_numpy(rng.uniform(0, 60, (120, 2)))
    r = 3.0
    junc, idx = merge_endpoints(pts, r)
    d = torch.cdist(pts, pts)
    for i, j in itertools.combinations(range(len(pts)), 2):
        if d[i, j] <= r:
            assert idx[i] == idx[j]
    # different junctions: no two of their points are within r
    diff = idx[:, None] != idx[None]
    assert (d[diff] > r).all()
    for k in range(len(junc)):
        assert torch.allclose(junc[k], pts[idx == k].mean(0))
    first = [int(idx[(idx == k).nonzero()[0, 0]]) for k in range(len(junc))]
    assert first == list(range(len(junc)))  # numbered by first occurrence


# ----------------------------------------------------------------- homography
def test_a_segment_and_its_warp_match():
    H = torch.tensor(
        [[0.9, 0.1, 30.0], [-0.05, 1.05, 10.0], [1e-4, 2e-5, 1.0]], dtype=torch.float64
    )[None]
    lines0 = batch(
        seg(100, 100, 300, 120), seg(50, 400, 60, 250), seg(500, 50, 600, 60)
    )
    lines1 = warp_lines(lines0, H)[:, [2, 0, 1]]  # shuffled
    gt = homography_gt(lines0, lines1, H)
    assert gt["line_matches0"].tolist() == [[1, 2, 0]]
    assert gt["line_matches1"].tolist() == [[2, 0, 1]]
    assert gt["line_assignment"].sum() == 3
    # a reversed segment (endpoints swapped) is the same segment
    gt = homography_gt(lines0, warp_lines(lines0, H).flip(-2), H)
    assert gt["line_matches0"].tolist() == [[0, 1, 2]]


def test_a_segment_too_far_is_unmatched():
    lines0 = batch(seg(100, 100, 300, 100))
    for dy, expect in ((4.0, 0), (6.0, -1)):  # 5 px perpendicular distance
        gt = homography_gt(lines0, batch(seg(100, 100 + dy, 300, 100 + dy)))
        assert gt["line_matches0"].tolist() == [[expect]], dy


@pytest.mark.parametrize(
    "x0,x1,expect",
    [
        (150, 300, 0),  # overlap: half of line 0, a third of line 1 (both > 20 %)
        (170, 500, -1),  # 30 % of line 0 but 9 % of line 1
        (250, 400, -1),  # disjoint
    ],
)
def test_partial_overlap(x0, x1, expect):
    lines0 = batch(seg(100, 200, 200, 200))
    lines1 = batch(seg(x0, 201, x1, 201))
    gt = homography_gt(lines0, lines1)
    assert gt["line_matches0"].item() == expect
    assert gt["line_matches1"].item() == expect


def test_hungarian_assigns_one_to_one_by_overlap():
    lines0 = batch(seg(100, 100, 300, 100))
    lines1 = batch(seg(100, 102, 200, 102), seg(100, 101, 300, 101))  # the 2nd is best
    gt = homography_gt(lines0, lines1)
    assert gt["line_matches0"].tolist() == [[1]]
    assert gt["line_matches1"].tolist() == [[-1, 0]]


def test_hungarian_over_non_candidates_as_upstream():
    """Upstream's assignment runs over every pair of the lines that have a candidate:
    (0, 1), not a candidate (10 of 50 samples: not above 20 %) but of product 500,
    wins with (1, 2) over (0, 0) (product 121) with (1, 1) or (1, 2), and is dropped:
    line 0 stays unmatched."""
    counts0 = torch.tensor([[[11, 10, 0], [0, 30, 30]]])  # samples of lines 0 on 1
    counts1 = torch.tensor([[[11, 0], [50, 30], [0, 30]]])  # samples of lines 1 on 0
    ones = [torch.ones(1, n, 50, dtype=torch.bool) for n in (2, 3)]
    masks = [torch.ones(1, n, dtype=torch.bool) for n in (2, 3)]
    gt = line_labels(counts0, counts1, *ones, *ones, *masks, overlap_of_all=True)
    assert gt["line_matches0"].tolist() == [[-1, 2]]
    assert gt["line_matches1"].tolist() == [[-1, -1, 1]]


def test_a_segment_leaving_the_image():
    """Mostly outside the other image: unmatched; mostly inside: matched on its
    visible part."""
    H = torch.tensor([[1.0, 0, 400], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)[None]
    # x in [100, 300] -> [500, 700]: 70 % of the samples inside the 640-wide image
    lines0 = batch(seg(100, 100, 300, 100), seg(200, 300, 300, 300))
    # line 1 of view 0 maps to [600, 700]: 40 % inside
    lines1 = batch(seg(500, 100, 640, 100), seg(600, 300, 640, 300))
    gt = homography_gt(lines0, lines1, H)
    assert gt["line_matches0"].tolist() == [[0, -1]]
    assert gt["line_matches1"].tolist() == [[0, -1]]


def test_exactly_half_visible_is_outside():
    """Upstream's rule: a line is visible when more than ``min_visible`` of its samples
    are; x in [140, 340] -> [540, 740]: 25 of 50 samples inside."""
    H = torch.tensor([[1.0, 0, 400], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)[None]
    gt = homography_gt(
        batch(seg(140, 100, 340, 100)), batch(seg(540, 100, 640, 100)), H
    )
    assert gt["line_matches0"].tolist() == [[-1]]
    assert gt["line_matches1"].tolist() == [[-1]]


@pytest.mark.parametrize("of_all,expect", [(True, -1), (False, 0)])
def test_overlap_share_of_all_or_visible_samples(of_all, expect):
    """x in [100, 300] -> [500, 700]: 35 samples visible, 8 of them on [500, 530]:
    more than 20 % of the visible ones, fewer than 20 % of all 50 (upstream's
    homography rule, the default for a homography)."""
    H = torch.tensor([[1.0, 0, 400], [0, 1, 0], [0, 0, 1]], dtype=torch.float64)[None]
    lines0, lines1 = batch(seg(100, 100, 300, 100)), batch(seg(500, 101, 530, 101))
    gt = homography_gt(lines0, lines1, H, overlap_of_all=of_all)
    assert gt["line_matches0"].tolist() == [[expect]]


@pytest.mark.parametrize("n0,n1", [(2, 0), (0, 2), (0, 0)])
def test_a_view_without_lines(n0, n1):
    """Every line of the other view is unmatched (it used to raise in argmax)."""
    lines = batch(seg(100, 100, 300, 100), seg(50, 400, 60, 250))
    gt = homography_gt(lines[:, :n0], lines[:, :n1])
    assert gt["line_assignment"].shape == (1, n0, n1)
    assert gt["line_matches0"].tolist() == [[-1] * n0]
    assert gt["line_matches1"].tolist() == [[-1] * n1]
    cam, T, depth = _fronto_parallel()
    gt = gt_line_matches_from_pose_depth(
        lines[:, :n0], lines[:, :n1], cam, cam, T, depth, depth
    )
    assert gt["line_matches0"].tolist() == [[-1] * n0]
    assert gt["line_matches1"].tolist() == [[-1] * n1]


def test_padded_lines_are_ignored_and_never_matched():
    lines0 = batch(seg(100, 100, 300, 100), seg(0, 0, 0, 0))
    lines1 = batch(seg(0, 0, 0, 0), seg(100, 100, 300, 100), seg(100, 100, 300, 100))
    mask0 = torch.tensor([[True, False]])
    mask1 = torch.tensor([[False, True, False]])
    gt = homography_gt(lines0, lines1, mask0=mask0, mask1=mask1)
    assert gt["line_matches0"].tolist() == [[1, -2]]
    assert gt["line_matches1"].tolist() == [[-2, 0, -2]]
    nan = batch(seg(100, 100, 300, 100), seg(float("nan"), 0, 1, 1))
    gt = homography_gt(nan, lines1[:, 1:2])
    assert gt["line_matches0"].tolist() == [[0, -2]]


def test_batched_equals_single():
    rng = np.random.default_rng(1)
    lines0 = torch.from_numpy(rng.uniform(0, 400, (3, 40, 2, 2)))
    shift = torch.tensor([[1.0, 0, 3], [0, 1, -2], [0, 0, 1]], dtype=torch.float64)
    H = shift.expand(3, 3, 3)
    lines1 = warp_lines(lines0, H) + torch.from_numpy(rng.normal(0, 1, (3, 40, 2, 2)))
    gt = homography_gt(lines0, lines1, H)
    assert (gt["line_matches0"] >= 0).float().mean() > 0.8
    for b in range(3):
        one = homography_gt(lines0[b : b + 1], lines1[b : b + 1], H[b : b + 1])
        for k, v in one.items():
            assert torch.equal(v[0], gt[k][b]), k


# ----------------------------------------------------------------- depth
def _fronto_parallel(depth_value: float = 2.0):
    """Two cameras 0.1 apart along x looking at a plane z = depth_value."""
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]], dtype=torch.float64)
    cam = Camera.from_calibration_matrix(K, (640, 480))[None]
    T = Pose.from_Rt(torch.eye(3, dtype=torch.float64), torch.tensor([-0.1, 0, 0.0]))
    depth = torch.full((1, 480, 640), depth_value, dtype=torch.float64)
    return cam, T[None], depth


def test_depth_ground_truth_on_a_plane():
    cam, T, depth = _fronto_parallel()
    shift = 500 * 0.1 / 2.0  # disparity: 25 px to the left in view 1
    lines0 = batch(seg(100, 100, 300, 120), seg(400, 300, 420, 450))
    lines1 = lines0[:, [1, 0]] - torch.tensor([shift, 0], dtype=torch.float64)
    gt = gt_line_matches_from_pose_depth(lines0, lines1, cam, cam, T, depth, depth)
    assert gt["line_matches0"].tolist() == [[1, 0]]


def test_lines_on_invalid_depth_are_ignored():
    """Less than half of the samples with known depth: ignored (-2), not unmatched."""
    cam, T, depth = _fronto_parallel()
    depth[:, :, 150:] = 0  # unknown right of x = 150
    lines0 = batch(seg(100, 100, 300, 100), seg(20, 200, 120, 200))  # 25 % / 100 %
    lines1 = batch(seg(75, 100, 275, 100), seg(-5, 200, 95, 200))
    gt = gt_line_matches_from_pose_depth(lines0, lines1, cam, cam, T, depth, depth)
    assert gt["line_matches0"].tolist() == [[-2, 1]]
    depth1 = torch.zeros_like(depth)  # nothing known in view 1: all ignored there
    gt = gt_line_matches_from_pose_depth(lines0, lines1, cam, cam, T, depth, depth1)
    assert gt["line_matches1"].tolist() == [[-2, -2]]
    assert gt["line_matches0"].tolist() == [[-2, -1]]  # its own depth known: -1


def test_counts_do_not_depend_on_the_chunking():
    g = torch.Generator().manual_seed(0)
    proj = torch.rand(5, 30, 50, 2, generator=g) * 100
    visible = torch.rand(5, 30, 50, generator=g) > 0.2
    lines = torch.rand(5, 20, 2, 2, generator=g) * 100
    whole = close_sample_counts(proj, visible, lines, 5.0)
    assert whole.sum() > 0
    for limit in (1, 30 * 50 * 20 * 2):  # one pair, two pairs per chunk
        chunked = close_sample_counts(proj, visible, lines, 5.0, max_elements=limit)
        assert torch.equal(chunked, whole)
