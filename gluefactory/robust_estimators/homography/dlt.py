"""Weighted, normalised DLT homography in PyTorch (``H_error_dlt`` of HPatches).

Not robust: every match with a positive weight votes, in proportion to its weight (the
matching score in the HPatches protocol). Points are Hartley-normalised (weighted
centroid at the origin, mean weighted distance sqrt(2)) in each image, the 2N x 9 DLT
system is solved as the eigenvector of the smallest eigenvalue of the weighted normal
matrix ``A^T W A`` (float64), and the normalisation is undone. Batched over leading
dimensions.

The fit is the library-convention homography when the points are in the library
convention (a DLT is convention-agnostic).
"""

from __future__ import annotations

import torch

from ..base_estimator import BaseEstimator
from ..common import matched_points

MIN_POINTS = 4
#: smallest / largest eigenvalue ratio below which the second-smallest eigenvalue of
#: ``A^T W A`` counts as zero (the solution is not unique: degenerate configuration)
EIG_RTOL = 1e-10


def _normalization(pts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Hartley normalisation T (..., 3, 3) of points (..., N, 2), weights (..., N)."""
    wsum = w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
    c = (w[..., None] * pts).sum(-2) / wsum  # (..., 2)
    d = (w * (pts - c[..., None, :]).norm(dim=-1)).sum(-1, keepdim=True) / wsum
    s = (2**0.5) / d.clamp_min(torch.finfo(w.dtype).tiny)  # (..., 1)
    T = torch.zeros(*pts.shape[:-2], 3, 3, dtype=pts.dtype, device=pts.device)
    T[..., 0, 0] = T[..., 1, 1] = s[..., 0]
    T[..., :2, 2] = -s * c
    T[..., 2, 2] = 1
    return T


def find_homography_dlt(
    p0: torch.Tensor, p1: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted DLT homography mapping p0 to p1.

    Args:
        p0, p1: matched points (..., N, 2).
        weights: non-negative weights (..., N) (matching scores), default all ones.
            Only relative weights matter; zero-weight points (even NaN ones) are
            ignored.
    Returns:
        H (..., 3, 3) in the dtype of ``p0``, scaled so that H[2, 2] = 1 (unit norm if
        H[2, 2] ~ 0), and success (...,) bool. Failures (fewer than 4 positive weights,
        non-finite input, a non-unique solution such as collinear points, a singular H)
        give success False and H = identity.
    """
    if p0.shape != p1.shape or p0.shape[-1] != 2:
        raise ValueError(
            f"p0 and p1 must both be (..., N, 2), got {p0.shape}, {p1.shape}."
        )
    dtype = p0.dtype if p0.is_floating_point() else torch.float32
    x0, x1 = p0.double(), p1.double()
    w = torch.ones(x0.shape[:-1], dtype=torch.float64, device=x0.device)
    if weights is not None:
        if weights.shape != p0.shape[:-1]:
            raise ValueError(
                f"weights must be {tuple(p0.shape[:-1])}, got {tuple(weights.shape)}."
            )
        w = weights.double()
    used = w > 0
    finite = torch.where(used, w.isfinite(), True) & torch.where(
        used[..., None], x0.isfinite() & x1.isfinite(), True
    ).all(-1)
    ok = finite.all(-1) & (used.sum(-1) >= MIN_POINTS)
    w = torch.where(used & finite, w, 0.0)
    x0 = torch.where(used[..., None] & finite[..., None], x0, 0.0)
    x1 = torch.where(used[..., None] & finite[..., None], x1, 0.0)
    w = w / w.sum(-1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)

    T0, T1 = _normalization(x0, w), _normalization(x1, w)
    y0 = x0 * T0[..., None, 0, 0:1] + T0[..., None, :2, 2]
    y1 = x1 * T1[..., None, 0, 0:1] + T1[..., None, :2, 2]
    x, y = y0[..., 0], y0[..., 1]
    u, v = y1[..., 0], y1[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    r1 = torch.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], -1)
    r2 = torch.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], -1)
    A = torch.cat([r1, r2], -2)  # (..., 2N, 9)
    wa = torch.cat([w, w], -1)[..., None]
    M = A.transpose(-1, -2) @ (wa * A)  # (..., 9, 9)
    # Too few points or coincident ones make the normalisation (and M) non-finite, on
    # which eigh raises: solve a harmless system there instead; those fail below.
    solvable = ok & M.isfinite().all(-1).all(-1)
    ok = solvable
    eye9 = torch.eye(9, dtype=M.dtype, device=M.device).expand_as(M)
    M = torch.where(solvable[..., None, None], M, eye9)
    T0 = torch.where(solvable[..., None, None], T0, eye9[..., :3, :3])
    T1 = torch.where(solvable[..., None, None], T1, eye9[..., :3, :3])
    evals, evecs = torch.linalg.eigh(M)
    unique = evals[..., 1] > EIG_RTOL * evals[..., -1].clamp_min(
        torch.finfo(M.dtype).tiny
    )
    Hn = evecs[..., 0].reshape(*M.shape[:-2], 3, 3)
    H = torch.linalg.inv(T1) @ Hn @ T0
    scale = torch.where(
        H[..., 2, 2].abs() > 1e-12, H[..., 2, 2], H.flatten(-2).norm(dim=-1)
    )
    H = H / scale[..., None, None]
    cond = torch.linalg.svdvals(H)
    nonsingular = cond[..., -1] > 1e-10 * cond[..., 0]
    success = ok & unique & nonsingular & H.isfinite().all(-1).all(-1)
    eye = torch.eye(3, dtype=H.dtype, device=H.device).expand_as(H)
    H = torch.where(success[..., None, None], H, eye)
    return H.to(dtype), success


class DLTHomography(BaseEstimator):
    """``load_estimator("homography", {"name": "dlt"})``: weighted DLT, not robust.

    Input ``m_kpts0``, ``m_kpts1`` and optional ``m_scores`` (N,) as weights.
    ``inliers`` are the matches with a positive weight (those the fit uses);
    ``ransac_th`` is unused.
    """

    def _forward(self, data):
        k0, k1, _, _ = matched_points(data)
        w = data.get("m_scores")
        w = (
            torch.ones(k0.shape[:-1], device=k0.device)
            if w is None
            else torch.as_tensor(w)
        )
        w = w.reshape(k0.shape[:-1]).to(k0.device)
        H, success = find_homography_dlt(k0, k1, w)
        return {
            "success": bool(success),
            "M_0to1": H,
            "inliers": (w > 0)
            if bool(success)
            else torch.zeros_like(w, dtype=torch.bool),
        }
