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
convention. Everything is seeded: the same seed gives identical files with the same
library versions.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

VERSION = 1
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
    return _T(-0.5) @ H @ _T(0.5)


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def plane_homography(
    w: int, h: int, tilt: float, azimuth: float, roll: float, scale: float
) -> np.ndarray:
    """H (+0.5 convention) from image 1 (fronto-parallel view) to an orbiting camera.

    Camera 1 looks at the plane z = 1 with focal ``w`` and the principal point at the
    image centre. The new camera looks at the same central point from distance
    ``1 / scale``, its viewing direction tilted by ``tilt`` (radians) towards
    ``azimuth``, rolled by ``roll`` about its axis.
    """
    f = float(w)
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])
    target = np.array([0, 0, 1.0])
    # direction from the target to the camera centre, tilted away from -z
    axis = np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
    ax = axis * tilt
    angle = np.linalg.norm(ax)
    if angle > 0:
        k = ax / angle
        Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        Rtilt = np.eye(3) + np.sin(angle) * Kx + (1 - np.cos(angle)) * Kx @ Kx
    else:
        Rtilt = np.eye(3)
    center = target + Rtilt @ np.array([0, 0, -1.0 / scale])
    # camera looks at the target: its z axis is target - centre
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(np.array([0, 1.0, 0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = _rot("z", roll) @ np.stack([x, y, z])  # world (camera 1) -> new camera
    t = -R @ center
    n, d = np.array([0, 0, 1.0]), 1.0
    H = K @ (R + np.outer(t, n) / d) @ np.linalg.inv(K)
    return H / H[2, 2]


def render(canvas: np.ndarray, M: np.ndarray, w: int, h: int) -> np.ndarray:
    """Image (h, w) whose pixel p shows ``canvas`` at ``M p`` (+0.5 convention).

    Supersampled: rendered at SUPERSAMPLE x the size and area-averaged, so that
    minified views do not alias.
    """
    s = SUPERSAMPLE
    S = np.diag([1.0 / s, 1.0 / s, 1.0])  # big-image pixel -> output pixel (exact)
    M_big = to_center(M @ S)
    big = cv2.warpPerspective(
        canvas,
        M_big,
        (w * s, h * s),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def _corners(w: float, h: float) -> np.ndarray:
    return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)


def _warp(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.c_[pts, np.ones(len(pts))] @ H.T
    return p[:, :2] / p[:, 2:]


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
    images = [_photometric_mild(render(photo, A, w, h), rng)]
    Hs = []
    for k in range(2, 7):
        level = (k - 1) / 5  # 0.2 .. 1.0: harder towards image 6
        for _ in range(1000):
            tilt = np.deg2rad(rng.uniform(0.5, 1.0) * 55 * level)
            azimuth = rng.uniform(0, 2 * np.pi)
            roll = np.deg2rad(rng.uniform(-35, 35) * level)
            zoom = np.exp(rng.uniform(-1, 1) * np.log(1.7) * level)
            H = plane_homography(w, h, tilt, azimuth, roll, zoom)
            # the view must see the photo only (no border) and overlap image 1
            quad = _warp(A @ np.linalg.inv(H), _corners(w, h))
            back = _warp(np.linalg.inv(H), _corners(w, h))
            if _inside(quad, cw, ch) and _overlap(back, w, h) > 0.3:
                break
        else:  # pragma: no cover - the sampler always finds one in practice
            raise RuntimeError("could not sample a viewpoint change")
        images.append(_photometric_mild(render(photo, A @ np.linalg.inv(H), w, h), rng))
        Hs.append(H)
    return images, Hs


def _overlap(quad: np.ndarray, w: float, h: float) -> float:
    """Fraction of image 1 covered by the quadrilateral (rasterised, coarse)."""
    s = 8.0
    mask = np.zeros((int(h / s), int(w / s)), np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad / s - 0.5).astype(np.int32), 1)
    return float(mask.mean())


def _photometric_mild(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32) / 255
    x = x * rng.uniform(0.9, 1.1) + rng.normal(0, 1.5 / 255, x.shape)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def illumination_sequence(photo: np.ndarray, rng: np.random.Generator):
    """(images 1..6, identity homographies)."""
    ch, cw = photo.shape[:2]
    s = SIZE_SHORT / min(ch, cw)
    w, h = int(round(cw * s)), int(round(ch * s))
    A = np.diag([1 / s, 1 / s, 1.0])
    base = render(photo, A, w, h).astype(np.float32) / 255
    images = [(np.clip(base, 0, 1) * 255 + 0.5).astype(np.uint8)]
    for k in range(2, 7):
        level = (k - 1) / 5
        gamma = np.exp(
            rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * np.log(2.6) * level
        )
        gain = np.exp(rng.uniform(-1, 1) * np.log(2.2) * level)
        cast = np.exp(rng.normal(0, 0.25 * level, 3)).astype(np.float32)
        field = _light_field(h, w, rng, 0.8 * level)
        x = base**gamma * gain * cast * field[..., None]
        x = x + rng.normal(0, (1 + 6 * level) / 255, x.shape)
        images.append((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8))
    return images, [np.eye(3) for _ in range(5)]


def _light_field(h: int, w: int, rng: np.random.Generator, strength: float):
    """A smooth positive gain map (soft shadows / uneven light), mean about 1."""
    coarse = rng.normal(0, 1, (4, 5)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    smooth = smooth / (np.abs(smooth).max() + 1e-6)
    return np.exp(strength * smooth).astype(np.float32)


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
            if not cv2.imwrite(str(folder / f"{i}.ppm"), img[..., ::-1]):
                raise OSError(f"could not write {folder / f'{i}.ppm'}")
        for k, H in enumerate(Hs, 2):
            write_homography(folder / f"H_1_{k}", to_center(H))
    return {
        "format": "hpatches",
        "homography_convention": "opencv (pixel centres at integers), as HPatches",
        "sources": "scikit-image bundled photographs: "
        + ", ".join(n for _, n in sequences),
        "sequences": sorted(p.name for p in dest.iterdir() if p.is_dir()),
    }
