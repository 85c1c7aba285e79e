"""Line segments: sampling, point-to-segment distances and ground-truth line labels.

Segments are (..., L, 2, 2): two endpoints (x, y) in the library's pixel convention.
The labelling rule is GlueStick's (facts 4.3), written for any projection between the
views (a homography or depth and pose, :mod:`gluefactory.geometry.gt_generation`):

1. ``num_samples`` points are sampled evenly along each segment (endpoints included)
   and projected into the other view. A sample is *valid* when its projection is
   known (always for a homography, known depth otherwise) and *visible* when valid and
   inside the other image.
2. A sample of line i is *close* to line j of the other view when its projection is
   within ``th_dist`` px of j's supporting line and its foot lies on the segment j
   (the two overlap there).
3. (i, j) is a candidate when the close samples are more than ``th_overlap`` of the
   visible samples in both directions (i onto j and j onto i); with ``overlap_of_all``,
   of all ``num_samples`` samples instead (upstream's rule for a homography; its
   depth rule uses the visible ones).
4. The lines with a candidate are assigned one-to-one by the Hungarian algorithm on
   the negative product of the two counts of close samples, over all their pairs (as
   upstream); assigned pairs that are not candidates are dropped.

Labels: ``matches0[i] = j`` for assigned pairs; ``-2`` (ignored) for padded lines and
lines with fewer than ``min_valid`` valid samples; ``-1`` (unmatched) for every other
line, including those with at most ``min_visible`` of their valid samples visible in
the other image (mostly outside it), which are never candidates.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

IGNORE = -2
UNMATCHED = -1


def _check_lines(lines: torch.Tensor, name: str) -> None:
    if lines.dim() < 3 or lines.shape[-2:] != (2, 2):
        raise ValueError(f"{name} must be (..., L, 2, 2) segments, got {lines.shape}.")


def sample_on_lines(lines: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` evenly spaced points (endpoints included) on each segment:
    (..., L, 2, 2) -> (..., L, num, 2)."""
    _check_lines(lines, "lines")
    if num < 2:
        raise ValueError(f"num must be >= 2 (the two endpoints), got {num}.")
    t = torch.linspace(0, 1, num, device=lines.device, dtype=lines.dtype)[:, None]
    a, b = lines[..., :1, :], lines[..., 1:, :]  # (..., L, 1, 2)
    return a + t * (b - a)


def line_lengths(lines: torch.Tensor) -> torch.Tensor:
    """(..., L, 2, 2) -> (..., L)."""
    return (lines[..., 1, :] - lines[..., 0, :]).norm(dim=-1)


def point_segment_distances(
    points: torch.Tensor, lines: torch.Tensor, eps: float = 1e-9
) -> tuple[torch.Tensor, torch.Tensor]:
    """Perpendicular distances of points to the supporting lines of segments, and
    whether the foot of each perpendicular lies on the segment.

    ``points`` (B, P, 2), ``lines`` (B, L, 2, 2) -> ``(dist (B, P, L), on (B, P, L))``.
    Computed with two (P x 2) @ (2 x L) products (no (B, P, L, 2) tensor). A segment
    shorter than ``eps`` has no direction: nothing is ``on`` it.
    """
    _check_lines(lines, "lines")
    a = lines[..., 0, :]  # (B, L, 2)
    d = lines[..., 1, :] - a
    length = d.norm(dim=-1)
    degenerate = length < eps
    u = d / length.clamp_min(eps)[..., None]  # unit direction
    n = torch.stack([-u[..., 1], u[..., 0]], -1)  # unit normal
    along = points @ u.transpose(-1, -2) - (a * u).sum(-1)[..., None, :]
    dist = (points @ n.transpose(-1, -2) - (a * n).sum(-1)[..., None, :]).abs()
    on = (along >= 0) & (along <= length[..., None, :]) & ~degenerate[..., None, :]
    return dist, on


def close_sample_counts(
    projected: torch.Tensor,
    visible: torch.Tensor,
    lines: torch.Tensor,
    th_dist: float,
    max_elements: int = 2**26,
) -> torch.Tensor:
    """For each line i of one view and line j of the other, the number of visible
    projected samples of i close to the segment j (module docstring, step 2).

    ``projected`` (B, L0, S, 2), ``visible`` (B, L0, S), ``lines`` (B, L1, 2, 2)
    -> (B, L0, L1) int. Batched; pairs of the batch are taken in chunks of at most
    ``max_elements`` sample-segment tests, which bounds the memory.
    """
    b, l0, s, _ = projected.shape
    l1 = lines.shape[1]
    step = max(1, max_elements // max(l0 * s * l1, 1))
    out = []
    for k in range(0, b, step):
        p, v = projected[k : k + step], visible[k : k + step]
        n = len(p)
        safe = torch.where(v[..., None], p, torch.zeros_like(p))
        dist, on = point_segment_distances(
            safe.reshape(n, l0 * s, 2), lines[k : k + step]
        )
        close = (dist < th_dist) & on & v.reshape(n, l0 * s, 1)
        out.append(close.reshape(n, l0, s, l1).sum(2))
    return torch.cat(out) if out else projected.new_zeros((0, l0, l1), dtype=torch.long)


def _hungarian(
    score: np.ndarray, candidate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Upstream's assignment: the maximum total ``score`` (L0, L1) over the rows and
    columns that have a candidate, every pair among them included; returns the
    (rows, cols) of the assigned pairs that are candidates (a non-candidate pair that
    wins is dropped, its two lines left unmatched, as upstream)."""
    rows = np.flatnonzero(candidate.any(1))
    cols = np.flatnonzero(candidate.any(0))
    if len(rows) == 0:
        return rows, cols
    r, c = linear_sum_assignment(-score[np.ix_(rows, cols)])
    keep = candidate[rows[r], cols[c]]
    return rows[r[keep]], cols[c[keep]]


def line_labels(
    counts0: torch.Tensor,
    counts1: torch.Tensor,
    visible0: torch.Tensor,
    visible1: torch.Tensor,
    valid0: torch.Tensor,
    valid1: torch.Tensor,
    mask0: torch.Tensor,
    mask1: torch.Tensor,
    th_overlap: float = 0.2,
    min_valid: float = 0.5,
    min_visible: float = 0.5,
    overlap_of_all: bool = False,
) -> dict[str, torch.Tensor]:
    """Labels from the close-sample counts (module docstring, steps 3 and 4).

    ``counts0`` (B, L0, L1) (samples of lines 0 close to lines 1) and ``counts1``
    (B, L1, L0); ``visible0/1`` and ``valid0/1`` (B, L, S) per sample; ``mask0/1``
    (B, L) real (non-padded) lines. Returns ``line_assignment`` (B, L0, L1) bool and
    ``line_matches0/1`` (B, L0) / (B, L1) (index, -1 unmatched, -2 ignored).
    A line is visible when more than ``min_visible`` of its valid samples are (exactly
    half is out, as upstream).
    """
    num_valid0, num_valid1 = valid0.sum(-1), valid1.sum(-1)
    num_vis0, num_vis1 = visible0.sum(-1), visible1.sum(-1)
    s0, s1 = valid0.shape[-1], valid1.shape[-1]
    ignore0 = ~mask0 | (num_valid0 < min_valid * s0)
    ignore1 = ~mask1 | (num_valid1 < min_valid * s1)
    ok0 = ~ignore0 & (num_vis0 > min_visible * num_valid0)
    ok1 = ~ignore1 & (num_vis1 > min_visible * num_valid1)
    if overlap_of_all:
        num_vis0, num_vis1 = (
            torch.full_like(num_vis0, s0),
            torch.full_like(num_vis1, s1),
        )
    c1 = counts1.transpose(1, 2)  # (B, L0, L1): samples of lines 1 close to lines 0
    overlap0 = counts0 / num_vis0.clamp_min(1)[..., None]
    overlap1 = c1 / num_vis1.clamp_min(1)[:, None, :]
    candidate = (overlap0 > th_overlap) & (overlap1 > th_overlap)
    candidate &= ok0[..., None] & ok1[:, None, :]
    score, cand = (counts0 * c1).cpu().numpy(), candidate.cpu().numpy()
    assignment = np.zeros(score.shape, bool)
    for k in range(len(score)):  # Hungarian: per pair
        r, c = _hungarian(score[k], cand[k])
        assignment[k, r, c] = True
    assignment = torch.from_numpy(assignment).to(counts0.device)

    def side(assign: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        has = assign.any(-1)
        if assign.shape[-1] == 0:  # no line in the other view: argmax is undefined
            return torch.where(ignore, IGNORE, UNMATCHED)
        idx = assign.long().argmax(-1)
        return torch.where(has, idx, torch.where(ignore, IGNORE, UNMATCHED))

    return {
        "line_assignment": assignment,
        "line_matches0": side(assignment, ignore0),
        "line_matches1": side(assignment.transpose(1, 2), ignore1),
    }


def merge_endpoints(
    points: torch.Tensor, radius: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group points (P, 2) into junctions: the connected components of the graph
    linking points at most ``radius`` apart (exactly DBSCAN with ``eps = radius`` and
    ``min_samples = 1``, as upstream's wireframe). Returns the junctions (J, 2), the
    mean of their points, numbered by first occurrence, and each point's junction
    (P,) long."""
    if points.dim() != 2 or points.shape[-1] != 2:
        raise ValueError(f"points must be (P, 2), got {tuple(points.shape)}.")
    n = len(points)
    if n == 0:
        return points.new_zeros((0, 2)), torch.zeros(0, dtype=torch.long)
    # exact distances (the matrix-product shortcut is off by ~1e-6 near the radius)
    dist = torch.cdist(
        points[None].double(), points[None].double(),
        compute_mode="donot_use_mm_for_euclid_dist",
    )[0]  # fmt: skip
    adj = csr_matrix((dist <= radius).cpu().numpy())
    _, labels = connected_components(adj, directed=False)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)  # components by first occurrence
    rank = np.empty(len(first), np.int64)
    rank[order] = np.arange(len(first))
    idx = torch.from_numpy(rank[labels]).to(points.device)
    j = len(first)
    sums = points.new_zeros((j, 2)).index_add_(0, idx, points)
    counts = torch.bincount(idx, minlength=j).to(points.dtype)
    return sums / counts[:, None], idx
