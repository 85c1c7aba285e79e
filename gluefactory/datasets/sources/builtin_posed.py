"""Generator of the built-in posed set, in the ``posed_images`` format (see :mod:`.builtin`).

Scenes (``<dest>/<scene>/{images/, depths/*.h5, views.txt, pairs.txt}``):

* ``middlebury_motorcycle``: the Middlebury 2014 Motorcycle stereo pair as shipped by
  scikit-image (``skimage.data.stereo_motorcycle``, real photographs, quarter
  resolution) with the calibration of its docstring: f = 994.978 px, principal point
  (311.193, 254.877) for the left and (311.193 + 31.086, 254.877) for the right
  camera, baseline 193.001 mm along x. The principal points are given with pixel
  centres at integers, so 0.5 is added (library convention). Depth of the left view:
  ``baseline * f / (disparity + doffs)`` in metres, 0 where the disparity is unknown;
  the right view's depth is the left depth splatted into the right camera
  (z-buffered, :func:`gluefactory.geometry.depth.render_depth`), 0 where unseen.
* ``room_<k>``: ray-traced rooms (:mod:`.builtin_render`) whose walls, floor, ceiling,
  boxes and panels are textured with scikit-image's photographs, seen by 6 cameras
  at different positions and orientations; exact depth (z at pixel centres) and
  exact poses. Pairs are picked among the 15 camera pairs by covisibility.

Everything is seeded, and every pixel operation is version-independent
(:mod:`.builtin_pixels`): the same seed gives the same bytes everywhere. Images are
uncompressed PNG (lossless: no decoder can read other pixels, unlike JPEG), depths HDF5
(dataset ``depth``, float32 metres / scene units, 0 = unknown).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ...formats import posed
from ...formats.records import Scene, View
from ...geometry.depth import covisibility, render_depth
from ...geometry.wrappers import Camera, Pose
from .builtin_hpatches import load_photo
from .builtin_pixels import encode_png, matmul3, norm3, quantize, resize_area
from .builtin_render import Quad, look_at, render

VERSION = 3
NUM_ROOMS = 5
VIEWS_PER_ROOM = 6
PAIRS_PER_ROOM = 5
IMAGE_SIZE = (640, 480)  # (w, h)
FOCAL = 520.0

#: Middlebury 2014 Motorcycle, quarter resolution (skimage docstring)
MIDDLEBURY = {
    "f": 994.978,
    "cx": 311.193,
    "cy": 254.877,
    "doffs": 31.086,
    "B": 0.193001,
}

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "immunohistochemistry",
    "coins",
    "clock",
    "hubble_deep_field",
)  # each public domain or CC0 (see skimage.data's docstrings)
SURFACES = ("brick", "gravel", "grass")


def _texture(name: str, max_side: int = 640) -> np.ndarray:
    """A photo as float64 RGB in [0, 1], its long side shrunk to ``max_side`` by area
    averaging (no aliasing when seen from far)."""
    img = load_photo(name)
    s = max_side / max(img.shape[:2])
    if s < 1:
        h, w = img.shape[:2]
        return resize_area(img, round(w * s), round(h * s)) / 255.0
    return img / 255.0


def _write_image(path: Path, image: np.ndarray) -> None:
    path.write_bytes(encode_png(image))


def _write_scene(
    folder: Path,
    views: list[tuple],
    pairs: list[tuple[str, str]],
) -> None:
    """Images as PNG, the rest with :func:`gluefactory.formats.posed.write_scene`."""
    records, depths = {}, {}
    (folder / posed.IMAGES).mkdir(parents=True)
    for name, image, depth, R, t, K in views:
        h, w = depth.shape
        _write_image(folder / posed.IMAGES / name, image)
        records[name] = View.from_Rt(name, K, R, t, (w, h))
        depths[name] = depth
    posed.write_scene(folder, Scene(folder.name, records, list(pairs)), depths)


# --------------------------------------------------------------------- Middlebury
def middlebury_scene(folder: Path) -> int:
    from skimage.data import stereo_motorcycle

    left, right, disp = stereo_motorcycle()
    m = MIDDLEBURY
    h, w = disp.shape
    known = np.isfinite(disp) & (disp > 0)
    depth0 = np.where(
        known, m["B"] * m["f"] / (np.where(known, disp, 0) + m["doffs"]), 0
    )
    K0 = np.array([[m["f"], 0, m["cx"] + 0.5], [0, m["f"], m["cy"] + 0.5], [0, 0, 1]])
    K1 = K0.copy()
    K1[0, 2] += m["doffs"]
    R, t1 = np.eye(3), np.array([-m["B"], 0, 0])
    cam0 = Camera.from_calibration_matrix(torch.from_numpy(K0), (w, h))
    cam1 = Camera.from_calibration_matrix(torch.from_numpy(K1), (w, h))
    T = Pose.from_Rt(torch.eye(3, dtype=torch.float64), torch.from_numpy(t1))
    depth1 = render_depth(torch.from_numpy(depth0), cam0, cam1, T).numpy()
    views = [
        ("left.png", left, depth0, R, np.zeros(3), K0),
        ("right.png", right, depth1, R, t1, K1),
    ]
    _write_scene(folder, views, [("left.png", "right.png")])
    return 1


# -------------------------------------------------------------------------- rooms
def _box_quads(center, size, yaw, textures, shade_fn):
    """The 5 visible faces (no bottom) of a box standing on the floor."""
    cx, cy, cz = center
    sx, sy, sz = size
    c, s = np.cos(yaw), np.sin(yaw)
    ex = np.array([c, 0, -s]) * sx
    ez = np.array([s, 0, c]) * sz
    ey = np.array([0, -sy, 0.0])  # up (world y points down)
    base = np.array([cx, cy, cz]) - ex / 2 - ez / 2  # floor corner
    faces = [
        (base, ex, ey),  # front
        (base + ez, ey, ex),  # back
        (base, ey, ez),  # left
        (base + ex, ez, ey),  # right
        (base + ey, ex, ez),  # top
    ]
    return [
        Quad(o, u, v, tex, shade_fn(np.cross(u, v)))
        for (o, u, v), tex in zip(faces, textures)
    ]


def room_quads(rng: np.random.Generator) -> list[Quad]:
    """A closed room (floor, ceiling, 4 walls) with 2 boxes and a standing panel."""
    light = np.array([0.4, 1.0, 0.6])
    light /= norm3(light)

    def shade(normal):
        n = normal / norm3(normal)
        return float(
            0.45 + 0.55 * abs(n[0] * light[0] + n[1] * light[1] + n[2] * light[2])
        )

    photos = list(rng.permutation(PHOTOS))
    surfaces = list(rng.permutation(SURFACES))
    X, Ytop, Yfloor, Z0, Z1 = 4.0, -2.5, 1.5, -2.0, 6.0 + rng.uniform(-0.5, 0.5)
    P = np.array
    walls = [
        (
            P([-X, Yfloor, Z0]),
            P([2 * X, 0, 0]),
            P([0, 0, Z1 - Z0]),
            surfaces[0],
        ),  # floor
        (P([-X, Ytop, Z0]), P([2 * X, 0, 0]), P([0, 0, Z1 - Z0]), photos[0]),  # ceiling
        (
            P([-X, Ytop, Z1]),
            P([2 * X, 0, 0]),
            P([0, Yfloor - Ytop, 0]),
            photos[1],
        ),  # back
        (P([-X, Ytop, Z0]), P([0, 0, Z1 - Z0]), P([0, Yfloor - Ytop, 0]), photos[2]),
        (P([X, Ytop, Z1]), P([0, 0, Z0 - Z1]), P([0, Yfloor - Ytop, 0]), photos[3]),
        (P([X, Ytop, Z0]), P([-2 * X, 0, 0]), P([0, Yfloor - Ytop, 0]), surfaces[1]),
    ]
    quads = [
        Quad(o, u, v, _texture(tex), shade(np.cross(u, v))) for o, u, v, tex in walls
    ]
    for k in range(2):
        size = rng.uniform([0.8, 0.7, 0.8], [1.6, 1.5, 1.6])
        center = (rng.uniform(-2.2, 2.2), Yfloor, rng.uniform(2.8, 4.3))
        tex = [_texture(photos[(4 + 5 * k + i) % len(photos)], 400) for i in range(5)]
        quads += _box_quads(center, size, rng.uniform(-0.7, 0.7), tex, shade)
    # a free-standing panel (a picture on an easel), slanted
    w_, h_ = rng.uniform(1.2, 1.8), rng.uniform(0.9, 1.3)
    yaw = rng.uniform(-0.6, 0.6)
    o = P([rng.uniform(-2.0, 1.0), rng.uniform(-0.8, 0.0), rng.uniform(2.2, 3.0)])
    u = P([np.cos(yaw), 0, -np.sin(yaw)]) * w_
    v = P([0, 1.0, 0.25]) * h_
    quads.append(Quad(o, u, v, _texture(photos[-1], 480), shade(np.cross(u, v))))
    return quads


def room_cameras(rng: np.random.Generator, n: int):
    """``n`` cameras inside the room, looking at its far part."""
    cams = []
    for _ in range(n):
        center = rng.uniform([-2.0, -0.6, -1.2], [2.0, 0.6, 1.0])
        target = rng.uniform([-1.2, -0.2, 3.5], [1.2, 0.8, 5.0])
        cams.append(look_at(center, target, math.radians(rng.uniform(-12, 12))))
    return cams


def select_pairs(
    covis: np.ndarray, angles: np.ndarray, k: int
) -> list[tuple[int, int]]:
    """Up to ``k`` pairs with covisibility in [0.3, 0.9], spread over the angles."""
    n = len(covis)
    cands = [
        (i, j)
        for i in range(n)
        for j in range(i + 1, n)
        if 0.3 <= min(covis[i, j], covis[j, i]) <= 0.9 and angles[i, j] >= 3.0
    ]
    cands.sort(key=lambda p: angles[p])
    if len(cands) <= k:
        return cands
    idx = np.round(np.linspace(0, len(cands) - 1, k)).astype(int)
    return [cands[i] for i in idx]


def room_scene(
    folder: Path,
    rng: np.random.Generator,
    views: int = VIEWS_PER_ROOM,
    supersample: int = 2,
) -> int:
    """Render one room into ``folder``; returns the number of pairs written."""
    w, h = IMAGE_SIZE
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    quads = room_quads(rng)
    cams = room_cameras(rng, views)
    rendered = []
    for R, t in cams:
        image, depth = render(quads, K, R, t, w, h, supersample)
        gain = rng.uniform(0.85, 1.15)
        image = image * gain + rng.normal(0, 1.5 / 255, image.shape)
        image = quantize(image)
        rendered.append((image, depth))
    n = len(cams)
    cam = Camera.from_calibration_matrix(torch.from_numpy(K), (w, h))
    poses = [Pose.from_Rt(torch.from_numpy(R), torch.from_numpy(t)) for R, t in cams]
    depths = [torch.from_numpy(d.astype(np.float64)) for _, d in rendered]
    covis, angles = np.zeros((n, n)), np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                T_ij = poses[j] @ poses[i].inv()
                covis[i, j] = covisibility(depths[i], depths[j], T_ij, cam, cam)
                (R0, _), (R1, _) = cams[i], cams[j]
                cos = (np.trace(matmul3(R1, R0.T)) - 1) / 2
                angles[i, j] = np.rad2deg(np.arccos(np.clip(cos, -1, 1)))
    names = [f"view{i}.png" for i in range(n)]
    pairs = [
        (names[i], names[j]) for i, j in select_pairs(covis, angles, PAIRS_PER_ROOM)
    ]
    _write_scene(
        folder,
        [(names[i], *rendered[i], *cams[i], K) for i in range(n)],
        pairs,
    )
    return len(pairs)


def build(
    dest: Path,
    seed: int,
    rooms: int = NUM_ROOMS,
    views: int = VIEWS_PER_ROOM,
    supersample: int = 2,
) -> dict:
    """Write every scene under ``dest``; returns a description for the manifest.

    ``rooms``, ``views`` and ``supersample`` shrink the set (tests); the built-in set
    uses the defaults.
    """
    pairs = {"middlebury_motorcycle": middlebury_scene(dest / "middlebury_motorcycle")}
    from tqdm import tqdm

    for k in tqdm(range(rooms), desc="builtin/posed rooms", leave=False):
        name = f"room_{k}"
        rng = np.random.default_rng([seed, 100 + k])
        pairs[name] = room_scene(dest / name, rng, views, supersample)
    return {
        "format": "posed_images",
        "pixel_convention": "pixel centres at +0.5 (COLMAP); depth = z at pixel centres",
        "sources": "Middlebury 2014 Motorcycle (skimage.data.stereo_motorcycle); "
        "ray-traced rooms textured with scikit-image photographs",
        "pairs": pairs,
    }
