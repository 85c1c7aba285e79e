"""Depth maps and keypoints: sampling, reprojection into another view, visibility.

Depth maps hold the z coordinate in the camera frame (as MegaDepth/COLMAP depth maps);
values <= 0 or non-finite mean "unknown". Keypoints are in the library convention
(pixel centres at +0.5), so pixel (i, j) of a depth map is the value at (i+.5, j+.5) and
sampling uses ``grid_sample(align_corners=False)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .coordinates import in_image, normalize_for_grid_sample
from .wrappers import Camera, Pose


def _batch(kpts: torch.Tensor, depth: torch.Tensor):
    if depth.dim() == 2:
        if kpts.dim() != 2:
            raise ValueError(
                f"Unbatched depth (H, W) needs kpts (N, 2), got {kpts.shape}."
            )
        return kpts[None], depth[None], True
    if depth.dim() != 3 or kpts.dim() != 3 or kpts.shape[0] != depth.shape[0]:
        raise ValueError(
            f"Expected kpts (B, N, 2) and depth (B, H, W), got {tuple(kpts.shape)} and "
            f"{tuple(depth.shape)}."
        )
    return kpts, depth, False


def valid_depth_mask(depth: torch.Tensor) -> torch.Tensor:
    """Where a depth map is known: finite and > 0."""
    return torch.isfinite(depth) & (depth > 0)


def sample_depth(
    kpts: torch.Tensor, depth: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth at keypoints: bilinear, with nearest-pixel fallback next to holes.

    ``kpts`` (B, N, 2) or (N, 2), ``depth`` (B, H, W) or (H, W). Bilinear interpolation
    mixes the 4 pixels around a keypoint; if any of them is unknown (<= 0 or non-finite)
    the depth of the pixel containing the keypoint is used instead. Returns
    ``(d, valid)``, each (B, N) (or (N,)); ``d`` is 0 where not valid (unknown depth,
    keypoint outside the map or non-finite).
    """
    kpts, depth, unbatched = _batch(kpts, depth)
    b, h, w = depth.shape
    depth = depth.to(kpts.dtype)
    size = torch.tensor([w, h], dtype=kpts.dtype, device=kpts.device)
    finite = torch.isfinite(kpts).all(-1)
    inside = finite & in_image(torch.where(finite[..., None], kpts, -1.0), size)
    safe = torch.where(inside[..., None], kpts, size / 2)
    grid = normalize_for_grid_sample(safe, size)[:, None]  # (B, 1, N, 2)
    d = torch.where(valid_depth_mask(depth), depth, torch.nan)[:, None]
    kw = dict(padding_mode="border", align_corners=False)
    bil = F.grid_sample(d, grid, mode="bilinear", **kw)[:, 0, 0]
    near = F.grid_sample(d, grid, mode="nearest", **kw)[:, 0, 0]
    out = torch.where(torch.isnan(bil), near, bil)
    valid = inside & valid_depth_mask(out)
    out = torch.where(valid, out, torch.zeros_like(out))
    if unbatched:
        return out[0], valid[0]
    return out, valid


def reproject(
    kpts0: torch.Tensor,
    d0: torch.Tensor,
    valid0: torch.Tensor,
    T_0to1: Pose,
    camera0: Camera,
    camera1: Camera,
    depth1: torch.Tensor | None = None,
    occlusion_tol: float | None = None,
    th_consistency: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map keypoints of view 0 with known depths into view 1.

    ``kpts0`` (B, N, 2), ``d0`` / ``valid0`` (B, N) (from :func:`sample_depth` or
    cached), cameras and pose with batch shape (B,). Returns ``(kpts0_1, visible)``: the
    projections (B, N, 2) and where they are trusted, i.e. valid depth, in front of
    camera 1 and inside its image, and with ``depth1`` (B, H1, W1) given:

    * ``occlusion_tol`` (relative): not hidden, i.e. not farther than the surface of
      ``depth1`` at the projection by more than ``occlusion_tol * depth1``. Projections
      onto unknown depth are not judged occluded.
    * ``th_consistency`` (px): the projection, lifted with ``depth1`` and mapped back,
      lands within this distance of the keypoint (needs known depth at the projection).
    """
    p3d1 = T_0to1.transform(camera0.unproject(kpts0, d0))
    kpts0_1, in_front = camera1.project(p3d1)
    visible = valid0 & in_front & camera1.in_image(kpts0_1)
    if depth1 is None or (occlusion_tol is None and th_consistency is None):
        return kpts0_1, visible
    d1, valid1 = sample_depth(kpts0_1, depth1)
    if occlusion_tol is not None:
        occluded = valid1 & (p3d1[..., 2] > d1 * (1 + occlusion_tol))
        visible = visible & ~occluded
    if th_consistency is not None:
        back, front = camera0.project(
            T_0to1.inv().transform(camera1.unproject(kpts0_1, d1))
        )
        consistent = (back - kpts0).norm(dim=-1) < th_consistency
        visible = visible & valid1 & front & consistent
    return kpts0_1, visible


def project(
    kpts0: torch.Tensor,
    depth0: torch.Tensor,
    depth1: torch.Tensor | None,
    T_0to1: Pose,
    camera0: Camera,
    camera1: Camera,
    occlusion_tol: float | None = None,
    th_consistency: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of view 0 (B, N, 2) -> (positions in view 1, visible).

    See :func:`reproject`.

    The depth of each keypoint is sampled from ``depth0`` (B, H0, W0).
    """
    d0, valid0 = sample_depth(kpts0, depth0)
    return reproject(
        kpts0,
        d0,
        valid0,
        T_0to1,
        camera0,
        camera1,
        depth1,
        occlusion_tol,
        th_consistency,
    )


def render_depth(
    depth0: torch.Tensor,
    camera0: Camera,
    camera1: Camera,
    T_0to1: Pose,
    size1: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Depth map of view 1 rendered from the depth map of view 0 (z-buffered splatting).

    Every known pixel of ``depth0`` (H0, W0) is lifted, moved to camera 1 and splatted
    into the 4 pixels whose centres surround its projection, keeping the nearest depth.
    This closes the cracks left by surfaces stretched in view 1 and dilates foreground
    edges by at most one pixel. Pixels that nothing lands on (parts unseen in view 0)
    are 0 (unknown). ``size1`` = (w, h) defaults to ``camera1.size``.
    """
    if depth0.dim() != 2:
        raise ValueError(
            f"render_depth expects one depth map (H, W), got {depth0.shape}."
        )
    h0, w0 = depth0.shape
    w1, h1 = (int(x) for x in (camera1.size.tolist() if size1 is None else size1))
    ys, xs = torch.nonzero(valid_depth_mask(depth0), as_tuple=True)
    kpts = torch.stack([xs, ys], -1).to(camera0.dtype) + 0.5
    p3d = T_0to1.transform(camera0.unproject(kpts, depth0[ys, xs].to(camera0.dtype)))
    p2d, front = camera1.project(p3d)
    p2d, z = p2d[front], p3d[front][:, 2]
    base = torch.floor(p2d - 0.5).long()  # pixel whose centre is up-left of p2d
    zbuf = torch.full((h1 * w1,), torch.inf, dtype=z.dtype, device=z.device)
    for dx in (0, 1):
        for dy in (0, 1):
            x, y = base[:, 0] + dx, base[:, 1] + dy
            ok = (x >= 0) & (x < w1) & (y >= 0) & (y < h1)
            zbuf.scatter_reduce_(0, (y * w1 + x)[ok], z[ok], reduce="amin")
    zbuf = torch.where(torch.isfinite(zbuf), zbuf, torch.zeros_like(zbuf))
    return zbuf.reshape(h1, w1)


def _grid(h: int, w: int, stride: int, dtype, device) -> torch.Tensor:
    """Pixel centres (N, 2) of every ``stride``-th pixel, starting at ``stride // 2``."""
    ys, xs = torch.meshgrid(
        torch.arange(stride // 2, h, stride, device=device),
        torch.arange(stride // 2, w, stride, device=device),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(dtype) + 0.5


def covisibility(
    depth0: torch.Tensor,
    depth1: torch.Tensor,
    T_0to1: Pose,
    camera0: Camera,
    camera1: Camera,
    stride: int = 8,
    rule: str = "occlusion",
    tol: float | None = None,
) -> float:
    """Fraction of the pixels of view 0 (every ``stride``-th) seen in view 1.

    Depth maps (H, W) of both views, one camera each (batch shape ()). ``rule``:

    * ``occlusion`` (the built-in posed pairs): over all grid pixels; a pixel counts
      when its depth is known and :func:`project` finds it inside view 1, in front,
      and not hidden (``tol``: its ``occlusion_tol``, default 0.02); pixels of unknown
      depth count as not seen.
    * ``megadepth`` (MegaDepth's overlap, :func:`overlap`): over the *known-depth*
      pixels of view 0; a pixel counts when its 3D point lands inside view 1, in front
      of it, on a pixel whose known depth agrees within ``tol`` (relative, default
      0.05), so that ``overlap_matrix[i, j]`` is the co-visible part of what image i
      reconstructs. 0 when view 0 has no known depth on the grid.
    """
    h, w = depth0.shape
    kpts = _grid(h, w, stride, camera0.dtype, depth0.device)
    if rule == "occlusion":
        _, visible = project(
            kpts[None],
            depth0.to(camera0.dtype)[None],
            depth1.to(camera0.dtype)[None],
            T_0to1[None],
            camera0[None],
            camera1[None],
            occlusion_tol=0.02 if tol is None else tol,
        )
        return float(visible.double().mean())
    if rule != "megadepth":
        raise ValueError(f"covisibility rule must be occlusion or megadepth: {rule!r}")
    ij = (kpts - 0.5).long()
    z = depth0.to(camera0.dtype)[ij[:, 1], ij[:, 0]]
    known = valid_depth_mask(z)
    if not known.any():
        return 0.0
    p3d = T_0to1.transform(camera0.unproject(kpts[known], z[known]))
    p2d, in_front = camera1.project(p3d)
    inside = in_front & camera1.in_image(p2d)
    h1, w1 = depth1.shape
    x = p2d[:, 0].floor().long().clamp(0, w1 - 1)
    y = p2d[:, 1].floor().long().clamp(0, h1 - 1)
    d1 = depth1.to(p3d.dtype)[y, x]
    z1 = p3d[:, 2]
    tol = 0.05 if tol is None else tol
    agree = inside & valid_depth_mask(d1) & ((d1 - z1).abs() <= tol * z1)
    return float(agree.sum()) / float(known.sum())


def overlap(*args, **kwargs) -> float:
    """MegaDepth's overlap: :func:`covisibility` with ``rule="megadepth"``."""
    return covisibility(*args, rule="megadepth", **kwargs)
