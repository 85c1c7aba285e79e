"""Ground-truth keypoint and line correspondences from a homography or depth and pose.

Labels (facts 4.3), per keypoint of view 0 (``matches0``) and of view 1 (``matches1``):

* ``j >= 0`` **positive**: i and j are mutual nearest neighbours under the symmetric
  reprojection distance ``dist[i, j] = max(|P0(kp0_i) - kp1_j|, |kp0_i - P1(kp1_j)|)``
  (P0 maps view 0 into view 1, P1 the reverse) and ``dist < th_positive``;
* ``-1`` **unmatched**: the point's projection is farther than ``th_negative`` from
  every keypoint of the other view (these train the "no match" dustbin);
* ``-2`` **ignored**: anything in between, and padded / non-finite keypoints.

Since ``dist >= forward distance``, positives and unmatched points are disjoint whenever
``th_negative >= th_positive`` (checked). Everything is computed in float32 or float64,
never in half precision.

Lines (:func:`gt_line_matches`, and its homography and depth front-ends): GlueStick's
rule on samples along the segments, see :mod:`gluefactory.geometry.lines`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .coordinates import in_image
from .depth import reproject, sample_depth
from .epipolar import T_to_F, sym_epipolar_distance
from .homography import warp_points
from .lines import close_sample_counts, line_labels, sample_on_lines
from .wrappers import Camera, Pose

IGNORE = -2
UNMATCHED = -1


def _check_thresholds(th_positive: float, th_negative: float) -> None:
    if th_negative < th_positive:
        raise ValueError(
            f"th_negative ({th_negative}) must be >= th_positive ({th_positive}): "
            "otherwise a pair could be labelled both positive and unmatched."
        )


def keypoint_mask(
    kpts: torch.Tensor, mask: torch.Tensor | None = None, what: str = "keypoints"
) -> torch.Tensor:
    """(B, N) mask of real keypoints (B, N, 2), or of real ``what`` (B, N, ...), e.g.
    lines (B, L, 2, 2): finite coordinates and ``mask`` if given."""
    valid = torch.isfinite(kpts).flatten(2).all(-1)
    if mask is not None:
        if mask.shape != valid.shape:
            raise ValueError(
                f"Mask of shape {tuple(mask.shape)} does not fit {what} "
                f"{tuple(kpts.shape)}."
            )
        valid = valid & mask.bool()
    return valid


def _sq_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances (B, M, N) of a (B, M, 2) and b (B, N, 2), NaN-free.

    Per coordinate, without the (B, M, N, 2) difference tensor: the same values as
    ``(a[:, :, None] - b[:, None]).square().sum(-1)`` (timed in the ground-truth row
    of the former ``benchmarks/hot_paths.py``, docs/benchmarks.md)."""
    dx = a[..., :1] - b[..., None, :, 0]
    d = dx.square_().add_((a[..., 1:] - b[..., None, :, 1]).square_())
    return d.masked_fill_(torch.isnan(d), torch.inf)


def labels_from_distances(
    dist0: torch.Tensor,
    dist1: torch.Tensor,
    pair_ok: torch.Tensor,
    neg_ok0: torch.Tensor,
    neg_ok1: torch.Tensor,
    th_positive: float,
    th_negative: float,
) -> dict[str, torch.Tensor]:
    """Labels from squared forward / backward distances (B, M, N).

    ``pair_ok`` (B, M, N): pairs allowed to be positive (both points real and visible);
    ``neg_ok0`` (B, M) / ``neg_ok1`` (B, N): points allowed to be unmatched. Only real
    keypoints of the other view may count as near (the caller sets the others' distances
    to inf).
    """
    _check_thresholds(th_positive, th_negative)
    dist = torch.where(pair_ok, torch.maximum(dist0, dist1), torch.inf)
    b, m, n = dist.shape
    if m > 0 and n > 0:
        # i and j are positive iff j = nn0[i], i = nn1[j] and dist[i, j] < th_positive:
        # decided per point from the two nearest-neighbour indices (first index on ties)
        best0, nn0 = dist.min(-1)  # (B, M)
        best1, nn1 = dist.min(-2)  # (B, N)
        pos0 = (nn1.gather(-1, nn0) == torch.arange(m, device=dist.device)) & (
            best0 < th_positive**2
        )
        pos1 = (nn0.gather(-1, nn1) == torch.arange(n, device=dist.device)) & (
            best1 < th_positive**2
        )
        min0, min1 = dist0.min(-1).values, dist1.min(-2).values
    else:  # no point on one side: nothing is near, nothing positive
        min0 = dist0.new_full((b, m), torch.inf)
        min1 = dist1.new_full((b, n), torch.inf)
        nn0 = torch.zeros((b, m), dtype=torch.long, device=dist.device)
        nn1 = torch.zeros((b, n), dtype=torch.long, device=dist.device)
        pos0, pos1 = min0 < 0, min1 < 0
    negative0 = neg_ok0 & (min0 > th_negative**2)
    negative1 = neg_ok1 & (min1 > th_negative**2)
    positive = torch.zeros_like(dist, dtype=torch.bool)
    if n > 0:
        positive.scatter_(-1, nn0[..., None], pos0[..., None])
    return {
        "assignment": positive,
        **_labels(nn0, pos0, negative0, nn1, pos1, negative1),
    }


def _labels(nn0, pos0, neg0, nn1, pos1, neg1) -> dict[str, torch.Tensor]:
    """matches0/1 and matching_scores0/1 from each point's positive partner (nnX where
    posX) and its unmatched flag (negX); all (B, M) / (B, N)."""

    def side(nn, pos, neg):
        m = torch.where(neg, UNMATCHED, IGNORE)
        return torch.where(pos, nn, m)

    m0, m1 = side(nn0, pos0, neg0), side(nn1, pos1, neg1)
    return {
        "matches0": m0,
        "matches1": m1,
        "matching_scores0": (m0 > UNMATCHED).float(),
        "matching_scores1": (m1 > UNMATCHED).float(),
    }


def gt_matches_from_homography(
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    H_0to1: torch.Tensor,
    th_positive: float = 3.0,
    th_negative: float = 3.0,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Labels for keypoints (B, M, 2) / (B, N, 2) related by H_0to1 (B, 3, 3).

    There is no image-boundary test: points warped outside the other image are simply
    far from all its keypoints and become unmatched. ``mask0/1`` (B, M/N) mark real
    (non-padded) keypoints; the others are ignored.
    """
    valid0 = keypoint_mask(kpts0, mask0)
    valid1 = keypoint_mask(kpts1, mask1)
    H = H_0to1.to(kpts0)
    kp0_1 = warp_points(kpts0, H)
    kp1_0 = warp_points(kpts1, torch.linalg.inv(H))
    pair_ok = valid0[:, :, None] & valid1[:, None, :]
    dist0 = torch.where(pair_ok, _sq_dist(kp0_1, kpts1), torch.inf)
    dist1 = torch.where(pair_ok, _sq_dist(kpts0, kp1_0), torch.inf)
    return labels_from_distances(
        dist0, dist1, pair_ok, valid0, valid1, th_positive, th_negative
    )


def gt_matches_from_pose_depth(
    kpts0: torch.Tensor,
    kpts1: torch.Tensor,
    camera0: Camera,
    camera1: Camera,
    T_0to1: Pose,
    T_1to0: Pose | None = None,
    depth0: torch.Tensor | None = None,
    depth1: torch.Tensor | None = None,
    th_positive: float = 3.0,
    th_negative: float = 5.0,
    th_epi: float | None = 5.0,
    th_consistency: float | None = None,
    occlusion_tol: float | None = None,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    depth_keypoints0: tuple[torch.Tensor, torch.Tensor] | None = None,
    depth_keypoints1: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Labels from depth maps (B, H, W) and the relative pose (batch shape (B,)).

    1. Depth at each keypoint: sampled from ``depthX`` (:func:`sample_depth`), or the
       cached ``depth_keypointsX = (depth (B, N), valid (B, N))``.
    2. A point is *visible* when its depth is known and its projection is in front of
       the other camera and inside its image (plus the optional occlusion / cycle
       checks of :func:`gluefactory.geometry.depth.reproject`).
    3. ``dist = inf`` unless both points are visible; positives as in the module docs.
    4. Unmatched: a point **with known depth** whose projection is farther than
       ``th_negative`` from every keypoint of the other view.
    5. Epipolar negatives (``th_epi`` px; None disables): a point without known depth,
       still ignored, whose symmetric epipolar distance (GT fundamental matrix) to every
       still-ignored point of the other view exceeds ``th_epi`` becomes unmatched.
       (Upstream Glue Factory compares against ``th_negative`` here; we use ``th_epi``.)
    """
    valid0 = keypoint_mask(kpts0, mask0)
    valid1 = keypoint_mask(kpts1, mask1)
    if T_1to0 is None:
        T_1to0 = T_0to1.inv()

    def depth_at(kpts, depth, cached, name):
        if cached is not None:
            d, v = cached
            return d.to(kpts), v.bool() & (d > 0)
        if depth is None:
            raise ValueError(
                f"Depth GT needs {name} (a depth map) or cached keypoint depths."
            )
        return sample_depth(kpts, depth)

    safe0 = torch.where(valid0[..., None], kpts0, torch.zeros_like(kpts0))
    safe1 = torch.where(valid1[..., None], kpts1, torch.zeros_like(kpts1))
    d0, has_depth0 = depth_at(safe0, depth0, depth_keypoints0, "view0.depth")
    d1, has_depth1 = depth_at(safe1, depth1, depth_keypoints1, "view1.depth")
    has_depth0 = has_depth0 & valid0
    has_depth1 = has_depth1 & valid1
    kw = dict(th_consistency=th_consistency, occlusion_tol=occlusion_tol)
    kp0_1, vis0 = reproject(
        safe0, d0, has_depth0, T_0to1, camera0, camera1, depth1, **kw
    )
    kp1_0, vis1 = reproject(
        safe1, d1, has_depth1, T_1to0, camera1, camera0, depth0, **kw
    )

    real = valid0[:, :, None] & valid1[:, None, :]
    dist0 = torch.where(real, _sq_dist(kp0_1, kpts1), torch.inf)
    dist1 = torch.where(real, _sq_dist(kpts0, kp1_0), torch.inf)
    pair_ok = vis0[:, :, None] & vis1[:, None, :]
    out = labels_from_distances(
        dist0, dist1, pair_ok, has_depth0, has_depth1, th_positive, th_negative
    )
    if th_epi is not None and kpts0.shape[1] > 0 and kpts1.shape[1] > 0:
        m0, m1 = out["matches0"], out["matches1"]
        F = T_to_F(camera0, camera1, T_0to1).to(kpts0)
        epi = sym_epipolar_distance(safe0, safe1, F, pairwise=True)
        ign0 = (m0 == IGNORE) & valid0
        ign1 = (m1 == IGNORE) & valid1
        epi = torch.where(ign0[:, :, None] & ign1[:, None, :], epi, torch.inf)
        epi = torch.where(torch.isnan(epi), torch.inf, epi)
        neg0 = ign0 & ~has_depth0 & (epi.min(-1).values > th_epi)
        neg1 = ign1 & ~has_depth1 & (epi.min(-2).values > th_epi)
        # positives are unchanged: only more points become unmatched
        labels = _labels(
            m0.clamp(min=0), m0 >= 0, neg0 | (m0 == UNMATCHED),
            m1.clamp(min=0), m1 >= 0, neg1 | (m1 == UNMATCHED),
        )  # fmt: skip
        out = {"assignment": out["assignment"], **labels}
    return out


#: samples (B, P, 2) of one view -> (projections (B, P, 2), valid (B, P), visible (B, P))
Projector = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def gt_line_matches(
    lines0: torch.Tensor,
    lines1: torch.Tensor,
    project0: Projector,
    project1: Projector,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    num_samples: int = 50,
    th_dist: float = 5.0,
    th_overlap: float = 0.2,
    min_valid: float = 0.5,
    min_visible: float = 0.5,
    overlap_of_all: bool = False,
) -> dict[str, torch.Tensor]:
    """Line labels for segments (B, L0, 2, 2) / (B, L1, 2, 2) under any projection.

    ``project0`` maps points of view 0 into view 1 and ``project1`` the reverse
    (:data:`Projector`: projections, valid = projection known, visible = valid and
    inside the other image). ``mask0/1`` (B, L) mark real (non-padded) lines. Returns
    ``line_assignment`` (B, L0, L1) and ``line_matches0/1`` (rule in
    :mod:`gluefactory.geometry.lines`). Batched; only the Hungarian step loops.
    ``overlap_of_all``: close samples are counted among all valid ones (inside the
    other image or not) and the overlap is their share of ``num_samples`` (upstream's
    homography rule); otherwise among, and of, the visible ones (its depth rule).
    """
    valid_lines0 = keypoint_mask(lines0, mask0, "lines")
    valid_lines1 = keypoint_mask(lines1, mask1, "lines")

    def project(lines, valid_lines, fn):
        b, n = lines.shape[:2]
        safe = torch.where(valid_lines[..., None, None], lines, torch.zeros_like(lines))
        pts = sample_on_lines(safe, num_samples).reshape(b, n * num_samples, 2)
        proj, valid, visible = fn(pts)
        real = valid_lines[..., None]
        shape = (b, n, num_samples)
        return (
            proj.reshape(*shape, 2),
            valid.reshape(shape) & real,
            visible.reshape(shape) & valid.reshape(shape) & real,
        )

    proj0, valid0, vis0 = project(lines0, valid_lines0, project0)
    proj1, valid1, vis1 = project(lines1, valid_lines1, project1)
    safe1 = torch.where(valid_lines1[..., None, None], lines1, torch.zeros_like(lines1))
    safe0 = torch.where(valid_lines0[..., None, None], lines0, torch.zeros_like(lines0))
    counts0 = close_sample_counts(
        proj0, valid0 if overlap_of_all else vis0, safe1, th_dist
    )
    counts1 = close_sample_counts(
        proj1, valid1 if overlap_of_all else vis1, safe0, th_dist
    )
    counts0 = counts0 * valid_lines1[:, None, :]  # padded lines are near nothing
    counts1 = counts1 * valid_lines0[:, None, :]
    return line_labels(
        counts0, counts1, vis0, vis1, valid0, valid1, valid_lines0, valid_lines1,
        th_overlap, min_valid, min_visible, overlap_of_all,
    )  # fmt: skip


def _size(size: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Image sizes (w, h) as a (B, 2) tensor like ``like``."""
    size = torch.as_tensor(size).to(like)
    return size.expand(like.shape[0], 2) if size.dim() == 1 else size


def gt_line_matches_from_homography(
    lines0: torch.Tensor,
    lines1: torch.Tensor,
    H_0to1: torch.Tensor,
    size0: torch.Tensor,
    size1: torch.Tensor,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    **kwargs,
) -> dict[str, torch.Tensor]:
    """Line labels for views related by ``H_0to1`` (B, 3, 3); ``size0/1`` the images'
    (w, h), (2,) or (B, 2): a sample is visible when it warps inside the other image.
    Keyword arguments as :func:`gt_line_matches`; ``overlap_of_all`` defaults to True
    (upstream's homography rule: its labels, ``tests/geometry/test_lines_upstream.py``)."""
    kwargs.setdefault("overlap_of_all", True)
    H = H_0to1.to(lines0)
    size0, size1 = _size(size0, lines0), _size(size1, lines0)

    def projector(H, size):
        def fn(pts):
            proj = warp_points(pts, H)
            valid = torch.isfinite(proj).all(-1)
            return proj, valid, valid & in_image(proj, size)

        return fn

    return gt_line_matches(
        lines0,
        lines1,
        projector(H, size1),
        projector(torch.linalg.inv(H), size0),
        mask0,
        mask1,
        **kwargs,
    )


def gt_line_matches_from_pose_depth(
    lines0: torch.Tensor,
    lines1: torch.Tensor,
    camera0: Camera,
    camera1: Camera,
    T_0to1: Pose,
    depth0: torch.Tensor,
    depth1: torch.Tensor,
    T_1to0: Pose | None = None,
    mask0: torch.Tensor | None = None,
    mask1: torch.Tensor | None = None,
    **kwargs,
) -> dict[str, torch.Tensor]:
    """Line labels from depth maps (B, H, W) and the relative pose: samples take their
    depth from the map (:func:`sample_depth`; valid where known) and are visible when
    they project in front of the other camera and inside its image. Keyword arguments
    as :func:`gt_line_matches` (``min_valid``: the share of samples with known depth a
    line needs, else it is ignored)."""
    if T_1to0 is None:
        T_1to0 = T_0to1.inv()

    def projector(depth, T, cam_a, cam_b):
        def fn(pts):
            d, valid = sample_depth(pts, depth.to(pts))
            proj, visible = reproject(pts, d, valid, T, cam_a, cam_b)
            return proj, valid, visible

        return fn

    return gt_line_matches(
        lines0,
        lines1,
        projector(depth0, T_0to1, camera0, camera1),
        projector(depth1, T_1to0, camera1, camera0),
        mask0,
        mask1,
        **kwargs,
    )
