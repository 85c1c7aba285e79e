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

All arithmetic is float64 in a fixed order (:mod:`.builtin_pixels`), so that the same
scene gives the same image and depth bits everywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .builtin_pixels import bilinear, matvec3, norm3


@dataclass
class Quad:
    """A textured rectangle ``origin + a * u + b * v`` for (a, b) in [0, 1]^2.

    Texture pixel (x, y) (library convention) is at (a * W_t, b * H_t).
    """

    origin: np.ndarray  # (3,)
    u: np.ndarray  # (3,) edge along the texture's x axis
    v: np.ndarray  # (3,) edge along the texture's y axis
    texture: np.ndarray  # (H_t, W_t, 3) float64 in [0, 1]
    shade: float = 1.0  # Lambertian factor (view-independent)

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.u, self.v)
        return n / norm3(n)


def look_at(center: np.ndarray, target: np.ndarray, roll: float = 0.0):
    """World-to-camera (R, t) of a camera at ``center`` looking at ``target``.

    World y points down (as the camera's y), so an unrolled camera keeps the horizon
    horizontal; ``roll`` (radians) turns it about its optical axis.
    """
    z = target - center
    z = z / norm3(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x = x / norm3(x)
    y = np.cross(z, x)
    c, s = math.cos(roll), math.sin(roll)
    R = np.stack([c * x - s * y, s * x + c * y, z])  # roll about the optical axis
    return R, -matvec3(R, center)


def _dot(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Dot products of rows, (N, 3) x (Q, 3) -> (N, Q), summed in a fixed order."""
    return sum(p[:, k, None] * q[None, :, k] for k in range(3))


def _intersect(quads, origin, dirs):
    """Nearest hit of each ray: (t (N,), quad index (N,) or -1, a (N,), b (N,))."""
    normals = np.stack([np.cross(q.u, q.v) for q in quads])  # (Q, 3)
    us = np.stack([q.u / norm3(q.u) ** 2 for q in quads])
    vs = np.stack([q.v / norm3(q.v) ** 2 for q in quads])
    rel = origin[None] - np.stack([q.origin for q in quads])  # (Q, 3)
    dn, du, dv = _dot(dirs, normals), _dot(dirs, us), _dot(dirs, vs)  # (N, Q) each
    rn, ru, rv = (sum(rel[:, k] * x[:, k] for k in range(3)) for x in (normals, us, vs))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -rn[None] / dn
    a = ru[None] + t * du
    b = rv[None] + t * dv
    ok = np.isfinite(t) & (t > 1e-6) & (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1)
    t = np.where(ok, t, np.inf)
    q = np.argmin(t, 1)
    rows = np.arange(len(dirs))
    best_t = t[rows, q]
    hit = np.isfinite(best_t)
    return best_t, np.where(hit, q, -1), a[rows, q], b[rows, q]


def sample(texture: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear texture values (N, 3) at points (x, y) in the library convention."""
    return bilinear(texture, x, y)


def _rays(K, R, t, w, h, ox: float, oy: float):
    """Camera centre and world directions of the rays through (i + ox, j + oy).

    Directions are scaled so that their z component in the camera frame is 1: the ray
    parameter of a hit is then its depth.
    """
    xs, ys = np.meshgrid(np.arange(w) + ox, np.arange(h) + oy)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    cam = ((xs.ravel() - cx) / fx, (ys.ravel() - cy) / fy)  # z = 1
    dirs = cam[0][:, None] * R[0] + cam[1][:, None] * R[1] + R[2]  # (R^T cam^T)^T
    return -(R[0] * t[0] + R[1] * t[1] + R[2] * t[2]), dirs


def _may_be_visible(q: Quad, K, R, t, w: int, h: int) -> bool:
    """False when the rectangle is surely outside the view (behind or beside it)."""
    corners = np.stack([q.origin, q.origin + q.u, q.origin + q.v, q.origin + q.u + q.v])
    cam = _dot(corners, R) + t
    if np.all(cam[:, 2] <= 1e-6):
        return False
    if np.any(cam[:, 2] <= 1e-6):
        return True  # crosses the camera plane: keep (projection is not convex)
    p = _dot(cam, K)
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
    """(image (h, w, 3) float64 in [0, 1], depth (h, w) float32, 0 where nothing)."""
    quads = [q for q in quads if _may_be_visible(q, K, R, t, w, h)]
    center, dirs = _rays(K, R, t, w, h, 0.5, 0.5)
    depth, hit_q, _, _ = _intersect(quads, center, dirs)
    depth = np.where(hit_q >= 0, depth, 0.0).reshape(h, w).astype(np.float32)
    image = np.zeros((h * w, 3), np.float64)
    offsets = (np.arange(supersample) + 0.5) / supersample
    for oy in offsets:
        for ox in offsets:
            _, dirs = _rays(K, R, t, w, h, ox, oy)
            _, q_idx, a, b = _intersect(quads, center, dirs)
            for qi, q in enumerate(quads):
                sel = q_idx == qi
                if not sel.any():
                    continue
                th, tw = q.texture.shape[:2]
                col = sample(q.texture, a[sel] * tw, b[sel] * th)
                image[sel] += col * q.shade
    image /= supersample**2
    return image.reshape(h, w, 3), depth
