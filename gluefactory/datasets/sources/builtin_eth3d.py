"""Generator of the built-in ETH3D-layout set (see :mod:`.builtin`): rooms with lines.

Scenes ``room_<k>`` (``<dest>/<scene>/`` in the layout of
:mod:`gluefactory.formats.eth3d`): ray-traced rooms of :mod:`.builtin_posed` (walls,
floor, ceiling, boxes and a slanted panel, textured with scikit-image's photographs),
whose straight edges and texture boundaries give line segments, seen by
``VIEWS_PER_ROOM`` cameras. Everything is exact: poses, intrinsics, depth (z at pixel
centres), so the depth-based ground truth of points and lines is that of the true
geometry.

The sparse model ETH3D's pairs are chosen from is exact too: 3D points on a regular
grid over every surface (``POINT_SPACING`` scene units apart), each observed by the
views that see it (inside the image, in front of the camera, and the first surface
hit by the ray from the camera centre towards it, computed by the same ray caster);
``images.txt`` lists their projections with their ids, so the benchmark's rule (pairs
sharing at least 500 points) picks the pairs.

Images are uncompressed RGB PNG, depths uncompressed 16-bit PNG (depth * 256, the
ETH3D encoding), the text files have fixed formatting: the same seed gives the same
bytes everywhere (:mod:`.builtin_pixels`). The images are at the benchmark's
resolution already: evaluate with ``data.downsize_factor=1``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...formats import eth3d
from ...formats.depth import png_values
from ...formats.records import Scene, View
from .builtin_pixels import encode_png, quantize
from .builtin_posed import room_cameras, room_quads
from .builtin_render import _intersect, render

VERSION = 1
NUM_ROOMS = 3
VIEWS_PER_ROOM = 5
IMAGE_SIZE = (512, 384)  # (w, h)
FOCAL = 416.0
POINT_SPACING = 0.1  # scene units between the 3D points on a surface


def surface_points(quads) -> np.ndarray:
    """(P, 3) points on a regular grid over every quad (cell centres)."""
    pts = []
    for q in quads:
        nu = max(1, int(np.linalg.norm(q.u) / POINT_SPACING))
        nv = max(1, int(np.linalg.norm(q.v) / POINT_SPACING))
        a, b = np.meshgrid((np.arange(nu) + 0.5) / nu, (np.arange(nv) + 0.5) / nv)
        a, b = a.ravel()[:, None], b.ravel()[:, None]
        pts.append(q.origin + a * q.u + b * q.v)
    return np.concatenate(pts)


def observations(points, quads, K, R, t, w, h) -> tuple[np.ndarray, np.ndarray]:
    """(xy (O, 2), ids (O,)) of the points a camera sees (unoccluded, in the image)."""
    cam = points @ R.T + t
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        x = K[0, 0] * cam[:, 0] / z + K[0, 2]
        y = K[1, 1] * cam[:, 1] / z + K[1, 2]
    ids = np.nonzero((z > 1e-3) & (x >= 0) & (x < w) & (y >= 0) & (y < h))[0]
    center = -R.T @ t
    hit, _, _, _ = _intersect(quads, center, points[ids] - center)  # the point: 1
    ids = ids[hit > 1 - 1e-6]
    return np.stack([x[ids], y[ids]], -1), ids


def room_scene(folder: Path, rng: np.random.Generator, views: int, supersample: int):
    """Render one room into ``folder``; returns the number of its views."""
    w, h = IMAGE_SIZE
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    quads = room_quads(rng)
    cams = room_cameras(rng, views)
    points = surface_points(quads)
    records, obs = {}, {}
    image_dir, depth_dir = folder / eth3d.IMAGES, folder / eth3d.DEPTHS
    image_dir.mkdir(parents=True)
    depth_dir.mkdir(parents=True)
    for i, (R, t) in enumerate(cams):
        name = f"view{i}.png"
        image, depth = render(quads, K, R, t, w, h, supersample)
        gain = rng.uniform(0.85, 1.15)
        image = quantize(image * gain + rng.normal(0, 1.5 / 255, image.shape))
        (image_dir / name).write_bytes(encode_png(image))
        (depth_dir / eth3d.depth_name(name)).write_bytes(encode_png(png_values(depth)))
        records[name] = View.from_Rt(name, K, R, t, (w, h))
        obs[name] = observations(points, quads, K, R, t, w, h)
    eth3d.write_scene(folder, Scene(folder.name, records), obs)
    return len(cams)


def build(
    dest: Path,
    seed: int,
    rooms: int = NUM_ROOMS,
    views: int = VIEWS_PER_ROOM,
    supersample: int = 2,
) -> dict:
    """Write every scene under ``dest``; returns a description for the manifest
    (``rooms``, ``views``, ``supersample`` shrink the set for tests)."""
    from tqdm import tqdm

    counts = {}
    for k in tqdm(range(rooms), desc="builtin/eth3d rooms", leave=False):
        rng = np.random.default_rng([seed, 300 + k])
        counts[f"room_{k}"] = room_scene(dest / f"room_{k}", rng, views, supersample)
    return {
        "format": "eth3d (dslr_calibration_undistorted, undistorted_depth PNG)",
        "pixel_convention": "pixel centres at +0.5 (COLMAP); depth = z at pixel centres",
        "sources": "ray-traced rooms textured with scikit-image photographs",
        "downsize_factor": 1,
        "views": counts,
    }
