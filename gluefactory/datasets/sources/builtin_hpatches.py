"""Generator of the built-in HPatches-format set (see :mod:`.builtin`).

Sources: real photographs bundled in scikit-image's wheel (BSD-3 package; the images
are public domain or CC0/CC-BY as listed in ``skimage.data``'s documentation).

* ``v_<photo>`` viewpoint sequences: the photo is a planar scene; image 1 looks at its
  central part, images 2..6 are views of the plane by a camera that orbits (tilt up to
  about 55 degrees), rolls (up to about 35 degrees) and moves closer or farther (scale
  0.6x to 1.7x), with the change growing from image 2 to 6, as in HPatches. Each view
  is rendered by a plane-induced homography with 3x3 supersampling and a mild exposure
  change and sensor noise.
* ``i_<photo>`` illumination sequences: identity geometry, strong photometric changes
  growing from 2 to 6: gamma, gain, colour cast, a smooth spatial light field
  (shadow-like), sensor noise.

``H_1_k`` files map image 1 to image k **in OpenCV's integer-centre convention**, like
the real HPatches files; the ``hpatches`` dataset converts them to the library's +0.5
convention. Everything is seeded, and every pixel operation is version-independent
(:mod:`.builtin_pixels`): the same seed gives the same bytes everywhere.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from .builtin_pixels import (
    apply_homography,
    bilinear,
    encode_ppm,
    inv3,
    matmul3,
    matvec3,
    norm3,
    quantize,
    resize_cubic,
)

VERSION = 2
SIZE_SHORT = 480  # short side of the images (the protocol's resize is then identity)
SUPERSAMPLE = 3

#: sequence name -> scikit-image loader
VIEWPOINT = ("astronaut", "coffee", "rocket", "brick", "immunohistochemistry", "gravel")
ILLUMINATION = ("chelsea", "camera", "grass", "coins")


@functools.lru_cache(maxsize=32)
def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as uint8 RGB (H, W, 3) (cached: do not modify it)."""
    import skimage.data

    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    img = np.ascontiguousarray(img[..., :3]).astype(np.uint8)
    img.setflags(write=False)
    return img


def _T(d: float) -> np.ndarray:
    return np.array([[1, 0, d], [0, 1, d], [0, 0, 1.0]])


def to_center(H: np.ndarray) -> np.ndarray:
    """H in the +0.5 convention -> the same map with pixel centres at integers."""
    return matmul3(matmul3(_T(-0.5), H), _T(0.5))


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def plane_homography(
    w: int, h: int, tilt: float, azimuth: float, roll: float, scale: float
) -> np.ndarray:
    """H (+0.5 convention) from image 1 (fronto-parallel view) to an orbiting camera.

    Camera 1 looks at the plane z = 1 with focal ``w`` and the principal point at the
    image centre. The new camera looks at the same central point from distance
    ``1 / scale``, its viewing direction tilted by ``tilt`` (radians) towards
    ``azimuth``, rolled by ``roll`` about its axis. (3 x 3 algebra in a fixed order,
    :mod:`.builtin_pixels`: the written H is the same everywhere.)
    """
    f = float(w)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    target = np.array([0, 0, 1.0])
    # direction from the target to the camera centre, tilted away from -z
    ax = np.array([math.cos(azimuth), math.sin(azimuth), 0.0]) * tilt
    angle = norm3(ax)
    if angle > 0:
        k = ax / angle
        Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        Rtilt = np.eye(3) + math.sin(angle) * Kx
        Rtilt = Rtilt + (1 - math.cos(angle)) * matmul3(Kx, Kx)
    else:
        Rtilt = np.eye(3)
    center = target + matvec3(Rtilt, [0, 0, -1.0 / scale])
    # camera looks at the target: its z axis is target - centre
    z = target - center
    z /= norm3(z)
    x = np.cross(np.array([0, 1.0, 0]), z)
    x /= norm3(x)
    y = np.cross(z, x)
    R = matmul3(_rot("z", roll), np.stack([x, y, z]))  # world (camera 1) -> camera
    t = -matvec3(R, center)
    n, d = np.array([0, 0, 1.0]), 1.0
    H = matmul3(matmul3(K, R + np.outer(t, n) / d), inv3(K))
    return H / H[2, 2]


def render(canvas: np.ndarray, M: np.ndarray, w: int, h: int) -> np.ndarray:
    """Image (h, w, 3) float64 in [0, 1] whose pixel p shows ``canvas`` (uint8) at
    ``M p`` (+0.5 convention), the border mirrored.

    Supersampled: the average of SUPERSAMPLE x SUPERSAMPLE bilinear samples spread
    regularly over each pixel (the same as rendering SUPERSAMPLE x larger and
    area-averaging), so that minified views do not alias.
    """
    s = SUPERSAMPLE
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    out = 0.0
    for oy in (np.arange(s) + 0.5) / s:
        for ox in (np.arange(s) + 0.5) / s:
            x, y = apply_homography(M, xs + ox, ys + oy)
            out = out + bilinear(canvas, x, y)
    return out / (s * s * 255.0)


def _corners(w: float, h: float) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)


def _warp(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    x, y = apply_homography(H, pts[:, 0], pts[:, 1])
    return np.stack([x, y], -1)


def _inside(quad: np.ndarray, w: float, h: float) -> bool:
    return bool(
        np.all(quad >= 0) and np.all(quad[:, 0] <= w) and np.all(quad[:, 1] <= h)
    )


def viewpoint_sequence(photo: np.ndarray, rng: np.random.Generator):
    """(images 1..6 as uint8 RGB, H_1_k in the +0.5 convention for k = 2..6)."""
    ch, cw = photo.shape[:2]
    h = SIZE_SHORT
    w = int(round(cw / ch * h)) if cw >= ch else SIZE_SHORT
    if cw < ch:
        h = int(round(ch / cw * w))
    # image 1 sees the central 62% of the photo; canvas pixels per image-1 pixel:
    frac = 0.62
    a = frac * cw / w
    A = np.array([[a, 0, (1 - frac) / 2 * cw], [0, a, (1 - frac) / 2 * ch], [0, 0, 1]])
    A = A.astype(np.float64)
    images = [_photometric_mild(render(photo, A, w, h), rng)]
    Hs = []
    for k in range(2, 7):
        level = (k - 1) / 5  # 0.2 .. 1.0: harder towards image 6
        for _ in range(1000):
            tilt = math.radians(rng.uniform(0.5, 1.0) * 55 * level)
            azimuth = rng.uniform(0, 2 * math.pi)
            roll = math.radians(rng.uniform(-35, 35) * level)
            zoom = math.exp(rng.uniform(-1, 1) * math.log(1.7) * level)
            H = plane_homography(w, h, tilt, azimuth, roll, zoom)
            # the view must see the photo only (no border) and overlap image 1
            quad = _warp(matmul3(A, inv3(H)), _corners(w, h))
            back = _warp(inv3(H), _corners(w, h))
            if _inside(quad, cw, ch) and _overlap(back, w, h) > 0.3:
                break
        else:  # pragma: no cover - the sampler always finds one in practice
            raise RuntimeError("could not sample a viewpoint change")
        images.append(_photometric_mild(render(photo, matmul3(A, inv3(H)), w, h), rng))
        Hs.append(H)
    return images, Hs


def _overlap(quad: np.ndarray, w: float, h: float) -> float:
    """Fraction of image 1 covered by the convex quadrilateral (coarse: the centres of
    8 x 8 pixel cells)."""
    s = 8.0
    ys, xs = np.mgrid[0 : int(h / s), 0 : int(w / s)]
    x, y = (xs + 0.5) * s, (ys + 0.5) * s
    side = []
    for (x0, y0), (x1, y1) in zip(quad, np.roll(quad, -1, 0)):
        side.append((x1 - x0) * (y - y0) - (y1 - y0) * (x - x0))
    side = np.stack(side)
    inside = np.all(side >= 0, 0) | np.all(side <= 0, 0)
    return float(inside.mean())


def _photometric_mild(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """float64 image in [0, 1] -> uint8, with an exposure change and noise."""
    x = img * rng.uniform(0.9, 1.1) + rng.normal(0, 1.5 / 255, img.shape)
    return quantize(x)


def illumination_sequence(photo: np.ndarray, rng: np.random.Generator):
    """(images 1..6, identity homographies)."""
    ch, cw = photo.shape[:2]
    s = SIZE_SHORT / min(ch, cw)
    w, h = int(round(cw * s)), int(round(ch * s))
    A = np.diag([1 / s, 1 / s, 1.0])
    base = render(photo, A, w, h)
    images = [quantize(base)]
    for k in range(2, 7):
        level = (k - 1) / 5
        gamma = math.exp(
            rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * math.log(2.6) * level
        )
        gain = math.exp(rng.uniform(-1, 1) * math.log(2.2) * level)
        cast = np.array([math.exp(c) for c in rng.normal(0, 0.25 * level, 3)])
        field = _light_field(h, w, rng, 0.8 * level)
        x = base**gamma * gain * cast * field[..., None]
        x = x + rng.normal(0, (1 + 6 * level) / 255, x.shape)
        images.append(quantize(x))
    return images, [np.eye(3) for _ in range(5)]


def _light_field(h: int, w: int, rng: np.random.Generator, strength: float):
    """A smooth positive gain map (soft shadows / uneven light), mean about 1."""
    coarse = rng.normal(0, 1, (4, 5))
    smooth = resize_cubic(coarse, w, h)
    smooth = smooth / (np.abs(smooth).max() + 1e-6)
    return np.exp(strength * smooth)


def write_homography(path: Path, H: np.ndarray) -> None:
    H = H / H[2, 2]
    path.write_text("\n".join(" ".join(f"{v:.12e}" for v in row) for row in H) + "\n")


def build(dest: Path, seed: int, only: list[str] | None = None) -> dict:
    """Write every sequence (or those named in ``only``) under ``dest``.

    Returns a description for the manifest. Each sequence has its own seeded random
    generator, so a subset is identical to the same sequences of the full set.
    """
    sequences = [("v", n) for n in VIEWPOINT] + [("i", n) for n in ILLUMINATION]
    from tqdm import tqdm

    todo = [
        (index, kind, name)
        for index, (kind, name) in enumerate(sequences)
        if only is None or f"{kind}_{name}" in only
    ]
    for index, kind, photo_name in tqdm(todo, desc="builtin/hpatches", leave=False):
        rng = np.random.default_rng([seed, index])
        photo = load_photo(photo_name)
        make = viewpoint_sequence if kind == "v" else illumination_sequence
        images, Hs = make(photo, rng)
        folder = dest / f"{kind}_{photo_name}"
        folder.mkdir(parents=True)
        for i, img in enumerate(images, 1):
            (folder / f"{i}.ppm").write_bytes(encode_ppm(img))
        for k, H in enumerate(Hs, 2):
            write_homography(folder / f"H_1_{k}", to_center(H))
    return {
        "format": "hpatches",
        "homography_convention": "opencv (pixel centres at integers), as HPatches",
        "sources": "scikit-image bundled photographs: "
        + ", ".join(n for _, n in sequences),
        "sequences": sorted(p.name for p in dest.iterdir() if p.is_dir()),
    }
