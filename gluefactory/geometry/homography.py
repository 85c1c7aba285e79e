"""Homographies: warping points, segments and images, resizing, random sampling.

A homography ``H_0to1`` (3 x 3) maps pixel coordinates of image 0 to image 1 in the
library convention (pixel centres at +0.5, image corners (0, 0) and (W, H); see
:mod:`gluefactory.geometry.coordinates`). OpenCV and kornia use pixel centres at
integers: convert with :func:`homography_to_center_convention` before calling
``cv2.warpPerspective`` and with :func:`homography_from_center_convention` after
``cv2.findHomography`` on centre-convention points.

The random sampler follows Glue Factory's synthetic homography dataset (facts 4.1) and
guarantees what that dataset only nearly does: the sampled quadrilateral is strictly
convex and lies inside the source image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .coordinates import (
    CENTER_OFFSET,
    image_corners,
    normalize_for_grid_sample,
    pixel_centers,
)

ArrayLike = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- points
def warp_points(
    points: torch.Tensor, H: torch.Tensor, inverse: bool = False, eps: float = 1e-8
) -> torch.Tensor:
    """Warp points (..., N, 2) by homographies (..., 3, 3) (or their inverse).

    The homogeneous divide is guarded: points mapped to (or next to) the line at
    infinity get a denominator of +-``eps`` and land very far away, but stay finite.
    Non-finite input points stay non-finite.
    """
    if points.shape[-1] != 2:
        raise ValueError(f"Expected points (..., N, 2), got {tuple(points.shape)}.")
    H = H.to(points)
    if inverse:
        H = torch.linalg.inv(H)
    ph = torch.cat([points, torch.ones_like(points[..., :1])], -1)
    w = ph @ H.transpose(-1, -2)
    z = w[..., 2:]
    z = torch.where(z.abs() < eps, torch.where(z < 0, -eps, eps).to(z), z)
    return w[..., :2] / z


def warp_points_numpy(
    points: np.ndarray, H: np.ndarray, eps: float = 1e-8
) -> np.ndarray:
    """NumPy version of :func:`warp_points` for points (N, 2) and H (3, 3)."""
    ph = np.concatenate([points, np.ones_like(points[..., :1])], -1) @ np.asarray(H).T
    z = ph[..., 2:]
    z = np.where(np.abs(z) < eps, np.where(z < 0, -eps, eps), z)
    return ph[..., :2] / z


def warp_lines(
    lines: torch.Tensor, H: torch.Tensor, inverse: bool = False
) -> torch.Tensor:
    """Warp segments (..., N, 2, 2) (two endpoints (x, y) each) by H (..., 3, 3).

    A homography maps straight lines to straight lines, so warping the endpoints warps
    the segment (as long as it does not cross the line at infinity).
    """
    if lines.shape[-2:] != (2, 2):
        raise ValueError(f"Expected segments (..., N, 2, 2), got {tuple(lines.shape)}.")
    flat = lines.reshape(*lines.shape[:-3], -1, 2)
    return warp_points(flat, H, inverse=inverse).reshape(lines.shape)


def sym_homography_error(
    kpts0: torch.Tensor, kpts1: torch.Tensor, H_0to1: torch.Tensor
) -> torch.Tensor:
    """Mean forward/backward transfer error (..., N) of correspondences, in pixels."""
    e0 = (warp_points(kpts0, H_0to1) - kpts1).norm(dim=-1)
    e1 = (warp_points(kpts1, H_0to1, inverse=True) - kpts0).norm(dim=-1)
    return (e0 + e1) / 2


# --------------------------------------------------------------------------- matrices
def normalize_homography(H: ArrayLike) -> ArrayLike:
    """Scale H (..., 3, 3) so that H[2, 2] = 1."""
    return H / H[..., 2:3, 2:3]


def _translation(d: float, like: ArrayLike) -> ArrayLike:
    T = [[1.0, 0.0, d], [0.0, 1.0, d], [0.0, 0.0, 1.0]]
    if isinstance(like, torch.Tensor):
        return torch.tensor(T, dtype=like.dtype, device=like.device)
    return np.array(T, dtype=np.asarray(like).dtype)


def homography_to_center_convention(H: ArrayLike) -> ArrayLike:
    """The same map for points whose pixel centres are at integers (OpenCV, kornia)."""
    return _translation(-CENTER_OFFSET, H) @ H @ _translation(CENTER_OFFSET, H)


def homography_from_center_convention(H: ArrayLike) -> ArrayLike:
    """Inverse of :func:`homography_to_center_convention`."""
    return _translation(CENTER_OFFSET, H) @ H @ _translation(-CENTER_OFFSET, H)


def _scale_matrix(scales, like: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(scales, dtype=like.dtype, device=like.device)
    if s.dim() == 0 or s.shape[-1] != 2:
        s = s[..., None].expand(*s.shape, 2)
    S = torch.zeros(*s.shape[:-1], 3, 3, dtype=like.dtype, device=like.device)
    S[..., 0, 0], S[..., 1, 1], S[..., 2, 2] = s[..., 0], s[..., 1], 1.0
    return S


def rescale_homography(
    H_0to1: torch.Tensor,
    scales0: float | Sequence[float] | torch.Tensor = 1.0,
    scales1: float | Sequence[float] | torch.Tensor = 1.0,
) -> torch.Tensor:
    """H between the resized images: ``S1 H S0^-1`` with ``S = diag(sx, sy, 1)``.

    ``scales0`` / ``scales1`` are the resize factors (s or (sx, sy), batchable) of
    image 0 and image 1; exact in the library convention where resizing maps x -> s x.
    """
    S0 = _scale_matrix(scales0, H_0to1)
    S1 = _scale_matrix(scales1, H_0to1)
    return S1 @ H_0to1 @ torch.linalg.inv(S0)


def homography_from_points(src: ArrayLike, dst: ArrayLike) -> ArrayLike:
    """DLT from 4 correspondences (..., 4, 2): H with H[2, 2] = 1 mapping src to dst.

    Accepts and returns numpy (float64) or torch tensors. Exact for 4 points in general
    position (no three collinear).
    """
    is_np = not isinstance(src, torch.Tensor)
    s = torch.as_tensor(np.asarray(src, np.float64)) if is_np else src
    d = torch.as_tensor(np.asarray(dst, np.float64)) if is_np else dst.to(src)
    if s.shape[-2:] != (4, 2) or d.shape[-2:] != (4, 2):
        raise ValueError(
            f"Expected (..., 4, 2) points, got {tuple(s.shape)}, {tuple(d.shape)}."
        )
    x, y = s[..., 0], s[..., 1]
    u, v = d[..., 0], d[..., 1]
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    A = torch.cat([rows_u, rows_v], -2)  # (..., 8, 8)
    b = torch.cat([u, v], -1)
    h = torch.linalg.solve(A, b)
    H = torch.cat([h, torch.ones_like(h[..., :1])], -1).reshape(*h.shape[:-1], 3, 3)
    return H.numpy() if is_np else H


# ------------------------------------------------------- point and line correspondences
# NumPy float64, batched over leading dimensions: the robust estimators solve thousands
# of tiny systems per call, on the CPU, in worker processes (no thread pools).


def segment_lines(segments: np.ndarray) -> np.ndarray:
    """Lines (..., 3) through segments (..., 2, 2), scaled so that a^2 + b^2 = 1.

    Then ``l @ (x, y, 1)`` is the signed distance of (x, y) to the infinite line. A
    segment of zero length has no line: its (a, b, c) are NaN.
    """
    segments = np.asarray(segments, np.float64)
    if segments.shape[-2:] != (2, 2):
        raise ValueError(f"Expected segments (..., 2, 2), got {segments.shape}.")
    ends = np.concatenate([segments, np.ones_like(segments[..., :1])], -1)
    lines = np.cross(ends[..., 0, :], ends[..., 1, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return lines / np.linalg.norm(lines[..., :2], axis=-1, keepdims=True)


def homography_dlt_rows(
    p0: np.ndarray, p1: np.ndarray, segments0: np.ndarray, lines1: np.ndarray
) -> np.ndarray:
    """Two DLT rows per correspondence (..., N + M, 2, 9): points first, then lines.

    For the homography x1 ~ H x0 with ``h = H.flatten()``, each row r gives one linear
    constraint r @ h = 0:

    * a point match p0 -> p1 (..., N, 2): the two rows of x1 x (H x0) = 0 that are
      linear in the coordinates of x1, ``(H x0)_1 - u (H x0)_3`` and
      ``(H x0)_2 - v (H x0)_3``;
    * a line match, segment 0 (..., M, 2, 2) -> line 1 (..., M, 3): ``l1 . (H e) = 0``
      for both endpoints e of segment 0 (H maps segment 0 onto line 1; equivalently
      H^T l1 ~ l0).

    With ``lines1`` scaled to a unit normal (:func:`segment_lines`), the residual of
    every row is an image-1 distance times the homogeneous scale of H x0, so points and
    lines weigh alike. Normalise the coordinates (similarities) before solving.
    """
    x0 = np.concatenate([p0, np.ones_like(p0[..., :1])], -1)  # (..., N, 3)
    zero = np.zeros_like(x0)
    u, v = p1[..., 0:1], p1[..., 1:2]
    point_rows = np.stack(
        [
            np.concatenate([x0, zero, -u * x0], -1),
            np.concatenate([zero, x0, -v * x0], -1),
        ],
        -2,
    )
    e0 = np.concatenate([segments0, np.ones_like(segments0[..., :1])], -1)
    line_rows = lines1[..., None, :, None] * e0[..., :, None, :]  # (..., M, 2, 3, 3)
    line_rows = line_rows.reshape(*line_rows.shape[:-2], 9)
    return np.concatenate([point_rows, line_rows], -3)


def dlt_null_vector(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares solution of A h = 0 with |h| = 1, for A (..., R, 9).

    Returns h (..., 9) and its conditioning (...,): the second smallest over the
    largest singular value of A. The solution is unique only when the conditioning is
    clearly positive; it is 0 for a degenerate system (e.g. collinear points, or fewer
    than 8 rows). A minimal system (8 rows) is solved by SVD, a larger one through the
    9 x 9 normal matrix A^T A (fast for thousands of rows; fine in normalised
    coordinates).
    """
    if A.shape[-2] < 8:  # under-determined: pad with zero rows (conditioning 0)
        pad = np.zeros((*A.shape[:-2], 8 - A.shape[-2], 9), A.dtype)
        A = np.concatenate([A, pad], -2)
    if A.shape[-2] < 9:  # the 9th right singular vector needs the full V
        _, s, vh = np.linalg.svd(A, full_matrices=True)
        s = np.concatenate([s, np.zeros_like(s[..., :1])], -1)
        h = vh[..., -1, :]
    else:
        evals, evecs = np.linalg.eigh(np.swapaxes(A, -1, -2) @ A)
        s = np.sqrt(np.maximum(evals[..., ::-1], 0.0))
        h = evecs[..., :, 0]
    cond = s[..., 7] / np.maximum(s[..., 0], np.finfo(s.dtype).tiny)
    return h, cond


# --------------------------------------------------------------------------- images
def warp_image(
    image: torch.Tensor,
    H_0to1: torch.Tensor,
    size: Sequence[int] | None = None,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    return_mask: bool = False,
):
    """Warp images (B, C, H, W) or (C, H, W) by H_0to1 (B, 3, 3) or (3, 3).

    Output pixel p (centre, library convention) reads the input at ``H^-1 p`` with
    ``grid_sample(align_corners=False)``. ``size`` = (w, h) of the output (default: the
    input size). With ``return_mask`` also returns (B, h, w) bool: the source point is
    inside the input image.
    """
    unbatched = image.dim() == 3
    if unbatched:
        image = image[None]
    if image.dim() != 4:
        raise ValueError(
            f"Expected an image (B, C, H, W) or (C, H, W), got {image.shape}."
        )
    b, _, h_in, w_in = image.shape
    w_out, h_out = (w_in, h_in) if size is None else (int(size[0]), int(size[1]))
    dtype = image.dtype if image.is_floating_point() else torch.float32
    H = H_0to1.to(device=image.device, dtype=dtype)
    grid = pixel_centers(h_out, w_out, device=image.device, dtype=dtype).reshape(
        1, -1, 2
    )
    src = warp_points(grid, H.expand(b, 3, 3) if H.dim() == 2 else H, inverse=True)
    size_in = torch.tensor([w_in, h_in], device=image.device, dtype=dtype)
    norm = normalize_for_grid_sample(src, size_in).reshape(b, h_out, w_out, 2)
    out = F.grid_sample(
        image.to(dtype), norm, mode=mode, padding_mode=padding_mode, align_corners=False
    )
    if unbatched:
        out = out[0]
    if not return_mask:
        return out
    mask = ((src >= 0) & (src <= size_in)).all(-1).reshape(b, h_out, w_out)
    return out, (mask[0] if unbatched else mask)


# --------------------------------------------------------------------------- sampling
def quad_cross_products(quad: np.ndarray) -> np.ndarray:
    """z components (4,) of the cross products of consecutive edges of a quad."""
    edges = np.roll(quad, -1, axis=0) - quad  # edge i goes from corner i to i+1
    nxt = np.roll(edges, -1, axis=0)
    return edges[:, 0] * nxt[:, 1] - edges[:, 1] * nxt[:, 0]


def is_convex(quad: np.ndarray, min_convexity: float = 0.0) -> bool:
    """Whether a quadrilateral (4, 2) is strictly convex with margin ``min_convexity``.

    All cross products of consecutive edges must share a sign and exceed the margin in
    magnitude (pass normalised coordinates for a scale-free margin).
    """
    c = quad_cross_products(np.asarray(quad, np.float64))
    return bool((c > min_convexity).all() or (c < -min_convexity).all())


def sample_homography_corners(
    image_size: Sequence[float],
    patch_size: Sequence[float],
    difficulty: float = 0.8,
    translation: float = 1.0,
    max_angle: float = 60.0,
    n_angles: int = 10,
    min_convexity: float = 0.05,
    rng: np.random.Generator | np.random.RandomState | int | None = None,
    max_tries: int = 10000,
) -> tuple[np.ndarray, np.ndarray]:
    """Random homography from a quadrilateral of the image to a patch (facts 4.1).

    ``image_size`` and ``patch_size`` are (w, h). Returns ``(H, quad)``: ``H`` (3, 3,
    float64) maps image pixels to patch pixels (library convention) and ``quad`` (4, 2)
    are the image points mapped to the patch corners (0,0), (pw,0), (pw,ph), (0,ph).

    1. Each image corner moves inward by U(0, 1) times its offset to the inner centred
       rectangle of size (1 - difficulty) (w, h); resampled until the quadrilateral is
       convex with margin ``min_convexity`` in normalised coordinates.
    2. The quadrilateral's centroid is moved to the image centre.
    3. It is rotated about its centroid by the first angle, from a shuffled
       ``linspace(-max_angle d, max_angle d, n_angles)``, that keeps it in the image.
    4. It is shifted by ``translation * difficulty`` of the way from the nearest
       in-image position to a uniform random in-image position, so it always ends
       inside the image (upstream can leave it slightly outside after step 2).
    """
    if not 0.0 <= difficulty < 1.0:
        raise ValueError(f"difficulty must be in [0, 1), got {difficulty}.")
    if isinstance(rng, (int, np.integer)) or rng is None:
        rng = np.random.default_rng(rng)
    w, h = float(image_size[0]), float(image_size[1])
    size = np.array([w, h])
    full = image_corners(w, h, dtype=torch.float64).numpy()
    inner = (full - size / 2) * (1.0 - difficulty) + size / 2
    for _ in range(max_tries):
        quad = full + rng.uniform(0.0, 1.0, size=(4, 2)) * (inner - full)
        if is_convex(quad / size, min_convexity):
            break
    else:
        raise RuntimeError(
            f"No convex quadrilateral with min_convexity={min_convexity} after "
            f"{max_tries} tries (difficulty={difficulty}); lower min_convexity."
        )
    quad = quad - quad.mean(0) + size / 2

    if n_angles > 0 and difficulty > 0 and max_angle > 0:
        limit = math.radians(max_angle) * difficulty
        angles = rng.permutation(np.linspace(-limit, limit, n_angles))
        centre = quad.mean(0)
        for a in angles:
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            cand = (quad - centre) @ rot.T + centre
            if ((cand >= 0) & (cand <= size)).all():
                quad = cand
                break

    lo = -quad.min(0)  # shifts keeping the quadrilateral inside [0, w] x [0, h]
    hi = size - quad.max(0)
    hi = np.maximum(hi, lo)  # extent never exceeds the image; guard rounding
    base = np.clip(0.0, lo, hi)
    target = rng.uniform(lo, hi)
    frac = float(np.clip(translation * difficulty, 0.0, 1.0))
    quad = quad + base + frac * (target - base)
    quad = np.clip(quad, 0.0, size)  # rounding only

    H = homography_from_points(
        quad,
        image_corners(*map(float, patch_size[:2]), dtype=torch.float64).numpy(),
    )
    return H, quad
