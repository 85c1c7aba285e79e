"""Exact pinhole ray casting of photo-textured rectangles (for :mod:`.builtin_posed`).

Conventions (the library's, :mod:`gluefactory.geometry.coordinates`): pixel (i, j)
covers [i, i+1) x [j, j+1) and its centre is (i + 0.5, j + 0.5); ``K`` maps camera
coordinates to those pixel coordinates, so a principal point at (w/2, h/2) is the
image centre. Cameras are world-to-camera (R, t) with x right, y down, z forward.

The depth map holds, for each pixel, the z coordinate (in the camera frame) of the
first surface hit by the ray through the pixel *centre*: exact, not interpolated. The
colour is the average over ``supersample**2`` rays spread regularly over the pixel
area (antialiasing, like a real sensor integrating over its pixel), of the texture
(bilinear) times a view-independent Lambertian shading.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Quad:
    """A textured rectangle ``origin + a * u + b * v`` for (a, b) in [0, 1]^2.

    Texture pixel (x, y) (library convention) is at (a * W_t, b * H_t).
    """

    origin: np.ndarray  # (3,)
    u: np.ndarray  # (3,) edge along the texture's x axis
    v: np.ndarray  # (3,) edge along the texture's y axis
    texture: np.ndarray  # (H_t, W_t, 3) float32 in [0, 1]
    shade: float = 1.0  # Lambertian factor (view-independent)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return n / np.linalg.norm(n)


def look_at(center: np.ndarray, target: np.ndarray, roll: float = 0.0):
    """World-to-camera (R, t) of a camera at ``center`` looking at ``target``.

    World y points down (as the camera's y), so an unrolled camera keeps the horizon
    horizontal; ``roll`` (radians) turns it about its optical axis.
    """
    z = target - center
    z = z / np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]]) @ np.stack([x, y, z])
    return R, -R @ center


def _intersect(quads, origin, dirs):
    """Nearest hit of each ray: (t (N,), quad index (N,) or -1, a (N,), b (N,))."""
    dt = dirs.dtype
    normals = np.stack([np.cross(q.u, q.v) for q in quads]).astype(dt)  # (Q, 3)
    us = np.stack([q.u / (q.u @ q.u) for q in quads]).astype(dt)
    vs = np.stack([q.v / (q.v @ q.v) for q in quads]).astype(dt)
    rel = (origin[None] - np.stack([q.origin for q in quads])).astype(dt)
    dn, du, dv = dirs @ normals.T, dirs @ us.T, dirs @ vs.T  # (N, Q) each
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -np.sum(rel * normals, 1)[None] / dn
    a = np.sum(rel * us, 1)[None] + t * du
    b = np.sum(rel * vs, 1)[None] + t * dv
    ok = np.isfinite(t) & (t > 1e-6) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
    t = np.where(ok, t, np.inf)
    q = np.argmin(t, 1)
    rows = np.arange(len(dirs))
    best_t = t[rows, q]
    hit = np.isfinite(best_t)
    return best_t, np.where(hit, q, -1), a[rows, q], b[rows, q]


def sample(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear texture values (N, 3) at points (x, y) in the library convention."""
    n, cols = len(x), 1024  # cv2.remap needs maps smaller than 32767 in each side
    rows = -(-n // cols)
    mx = np.zeros(rows * cols, np.float32)
    my = np.zeros(rows * cols, np.float32)
    mx[:n], my[:n] = x - 0.5, y - 0.5
    out = cv2.remap(
        texture,
        mx.reshape(rows, cols),
        my.reshape(rows, cols),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return out.reshape(rows * cols, -1)[:n]


def _rays(K, R, t, w, h, ox: float, oy: float):
    """Camera centre and world directions of the rays through (i + ox, j + oy).

    Directions are scaled so that their z component in the camera frame is 1: the ray
    parameter of a hit is then its depth.
    """
    xs, ys = np.meshgrid(np.arange(w) + ox, np.arange(h) + oy)
    pix = np.stack([xs.ravel(), ys.ravel(), np.ones(w * h)], -1)
    cam = pix @ np.linalg.inv(K).T
    return -R.T @ t, cam @ R  # (R^T cam^T)^T


def _may_be_visible(q: Quad, K, R, t, w: int, h: int) -> bool:
    """False when the rectangle is surely outside the view (behind or beside it)."""
    corners = np.stack([q.origin, q.origin + q.u, q.origin + q.v, q.origin + q.u + q.v])
    cam = corners @ R.T + t
    if np.all(cam[:, 2] <= 1e-6):
        return False
    if np.any(cam[:, 2] <= 1e-6):
        return True  # crosses the camera plane: keep (projection is not convex)
    p = cam @ K.T
    p = p[:, :2] / p[:, 2:]
    return not (
        np.all(p[:, 0] < 0)
        or np.all(p[:, 0] > w)
        or np.all(p[:, 1] < 0)
        or np.all(p[:, 1] > h)
    )


def render(
    quads: list[Quad],
    K: np.ndarray,
    R: np.ndarray,
    t: np.ndarray,
    w: int,
    h: int,
    supersample: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """(image (h, w, 3) float32 in [0, 1], depth (h, w) float32, 0 where nothing)."""
    quads = [q for q in quads if _may_be_visible(q, K, R, t, w, h)]
    center, dirs = _rays(K, R, t, w, h, 0.5, 0.5)
    depth, hit_q, _, _ = _intersect(quads, center, dirs)
    depth = np.where(hit_q >= 0, depth, 0.0).reshape(h, w).astype(np.float32)
    image = np.zeros((h * w, 3), np.float64)
    offsets = (np.arange(supersample) + 0.5) / supersample
    for oy in offsets:
        for ox in offsets:
            _, dirs = _rays(K, R, t, w, h, ox, oy)  # colour only: float32 suffices
            _, q_idx, a, b = _intersect(quads, center, dirs.astype(np.float32))
            for qi, q in enumerate(quads):
                sel = q_idx == qi
                if not sel.any():
                    continue
                th, tw = q.texture.shape[:2]
                col = sample(q.texture, a[sel] * tw, b[sel] * th)
                image[sel] += col * q.shade
    image /= supersample**2
    return image.reshape(h, w, 3).astype(np.float32), depth
