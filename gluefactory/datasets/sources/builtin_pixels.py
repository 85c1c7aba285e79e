"""Pixel operations of the built-in sets whose results do not depend on any library version.

The built-in sets ship the sha256 of every file they generate (:mod:`.builtin`), so each
step from the source photographs to the written bytes must give the same bits on every
installation. OpenCV's resampling does not (its warps and resizes use fixed-point tables
and SIMD paths that change between releases: ``warpPerspective`` + ``INTER_AREA`` gave
other pixels with OpenCV 4.10 than with 5.1), and neither do encoders that call a
library's deflate (zlib and zlib-ng compress differently). Here:

* resampling (bilinear sampling, area and bicubic resizing) is a fixed sequence of
  float64 multiplications and additions, elementwise in NumPy: IEEE-754 rounds each of
  them the same way everywhere, and no BLAS call or SIMD reduction reorders a sum;
* 3 x 3 products and inverses are written out for the same reason;
* :func:`quantize` rounds explicitly (half up) to uint8;
* :func:`encode_ppm` and :func:`encode_png` write the bytes themselves (PNG with stored,
  i.e. uncompressed, deflate blocks: the format is exact, only its checksums are
  computed, and CRC-32 and Adler-32 are fixed functions).

Conventions: pixel (i, j) covers [i, i+1) x [j, j+1), its centre is (i + 0.5, j + 0.5)
(the library's, :mod:`gluefactory.geometry.coordinates`).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np


def quantize(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (clipped) -> uint8, rounded half up."""
    return np.floor(np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def matmul3(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """A @ B for 3 x 3 float64 matrices, summed in a fixed order (no BLAS)."""
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    return A[:, 0:1] * B[0] + A[:, 1:2] * B[1] + A[:, 2:3] * B[2]


def matvec3(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """M @ v for a 3 x 3 matrix and a 3-vector, summed in a fixed order."""
    M, v = np.asarray(M, np.float64), np.asarray(v, np.float64)
    return M[:, 0] * v[0] + M[:, 1] * v[1] + M[:, 2] * v[2]


def norm3(v: np.ndarray) -> float:
    """Euclidean norm of a 3-vector, summed in a fixed order."""
    v = np.asarray(v, np.float64)
    return float(np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]))


def inv3(M: np.ndarray) -> np.ndarray:
    """Inverse of a 3 x 3 float64 matrix by cofactors (no LAPACK)."""
    M = np.asarray(M, np.float64)
    (a, b, c), (d, e, f), (g, h, i) = M
    cof = np.array(
        [
            [e * i - f * h, c * h - b * i, b * f - c * e],
            [f * g - d * i, a * i - c * g, c * d - a * f],
            [d * h - e * g, b * g - a * h, a * e - b * d],
        ]
    )
    return cof / (a * cof[0, 0] + b * cof[1, 0] + c * cof[2, 0])


def apply_homography(H: np.ndarray, x: np.ndarray, y: np.ndarray):
    """(x', y') = H (x, y, 1) dehomogenised, elementwise (any shapes)."""
    (a, b, c), (d, e, f), (g, h, i) = np.asarray(H, np.float64)
    z = g * x + h * y + i
    return (a * x + b * y + c) / z, (d * x + e * y + f) / z


def reflect101(i: np.ndarray, n: int) -> np.ndarray:
    """Indices mirrored into [0, n) without repeating the edge (OpenCV's REFLECT_101)."""
    if n == 1:
        return np.zeros_like(i)
    period = 2 * (n - 1)
    i = np.abs(i) % period
    return np.where(i >= n, period - i, i)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear values of ``image`` (H, W, C) at points (x, y) (any shape S, library
    convention): (*S, C) float64. Outside the image, the border is mirrored
    (REFLECT_101)."""
    h, w = image.shape[:2]
    image = np.asarray(image, np.float64)
    x, y = x - 0.5, y - 0.5  # to integer-centre coordinates
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    xa, xb = reflect101(x0, w), reflect101(x0 + 1, w)
    ya, yb = reflect101(y0, h), reflect101(y0 + 1, h)
    top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
    bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def _area_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices, weights), both (T, n_out): output j averages input interval
    [j s, (j + 1) s), s = n_in / n_out >= 1, each input pixel by its overlap."""
    j = np.arange(n_out)
    lo, hi = j * n_in / n_out, (j + 1) * n_in / n_out
    first = np.floor(lo).astype(np.int64)
    taps = int(np.max(np.ceil(hi).astype(np.int64) - first))
    idx = first[None] + np.arange(taps)[:, None]
    overlap = np.minimum(idx + 1, hi[None]) - np.maximum(idx, lo[None])
    weights = np.clip(overlap, 0, None) * (n_out / n_in)
    return np.minimum(idx, n_in - 1), weights


def _cubic_taps(n_in: int, n_out: int, a: float = -0.75):
    """(indices, weights), both (4, n_out): Keys' cubic convolution at the output pixel
    centres, border replicated."""
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    x0 = np.floor(x)
    t = x - x0
    d = np.stack([1 + t, t, 1 - t, 2 - t])  # distances to taps x0 - 1 .. x0 + 2
    near = ((a + 2) * d - (a + 3)) * d * d + 1  # |d| <= 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a  # 1 < |d| < 2
    weights = np.where(d <= 1, near, far)
    idx = x0.astype(np.int64)[None] + np.arange(-1, 3)[:, None]
    return np.clip(idx, 0, n_in - 1), weights


def _resample(image: np.ndarray, taps_y, taps_x) -> np.ndarray:
    """Separable resampling (rows, then columns) as fixed-order weighted sums."""
    image = np.asarray(image, np.float64)
    tail = (1,) * (image.ndim - 2)
    rows = 0.0
    for idx, wgt in zip(*taps_y):
        rows = rows + image[idx] * wgt.reshape((-1, 1) + tail)
    out = 0.0
    for idx, wgt in zip(*taps_x):
        out = out + rows[:, idx] * wgt.reshape((1, -1) + tail)
    return out


def resize_area(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Shrink ``image`` (H, W[, C]) to (h, w) by exact area averaging (antialiased),
    float64. For enlargement use :func:`resize_cubic`."""
    H, W = image.shape[:2]
    if w > W or h > H:
        raise ValueError(f"resize_area shrinks only: {W}x{H} -> {w}x{h}")
    return _resample(image, _area_taps(H, h), _area_taps(W, w))


def resize_cubic(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize ``image`` (H, W[, C]) to (h, w) by bicubic interpolation (Keys, a = -0.75,
    pixel centres aligned, border replicated), float64."""
    H, W = image.shape[:2]
    return _resample(image, _cubic_taps(H, h), _cubic_taps(W, w))


def encode_ppm(image: np.ndarray) -> bytes:
    """Binary PPM (P6) of a uint8 RGB image (H, W, 3)."""
    h, w, c = image.shape
    if image.dtype != np.uint8 or c != 3:
        raise ValueError(f"encode_ppm needs uint8 (H, W, 3), got {image.dtype} {c}")
    return b"P6\n%d %d\n255\n" % (w, h) + np.ascontiguousarray(image).tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data))
    )


def encode_png(image: np.ndarray) -> bytes:
    """PNG of a uint8 RGB (H, W, 3) or grey (H, W) image, or of a uint16 grey (H, W)
    one (depth maps), uncompressed (stored deflate blocks), so that the bytes do not
    depend on a compressor's version."""
    grey16 = image.dtype == np.uint16 and image.ndim == 2
    if not (grey16 or (image.dtype == np.uint8 and image.ndim in (2, 3))):
        raise ValueError(
            f"encode_png needs a uint8 image or a uint16 grey one, got {image.dtype} "
            f"{image.shape}"
        )
    h, w = image.shape[:2]
    colour = {1: 0, 3: 2}[1 if image.ndim == 2 else image.shape[2]]
    if grey16:  # PNG samples are big-endian
        image = np.ascontiguousarray(image, dtype=">u2").view(np.uint8)
    rows = np.ascontiguousarray(image).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()  # filter 0
    blocks, step = [], 65535
    for start in range(0, max(len(raw), 1), step):
        part = raw[start : start + step]
        final = int(start + step >= len(raw))
        blocks.append(struct.pack("<BHH", final, len(part), len(part) ^ 0xFFFF) + part)
    stream = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))
    header = struct.pack(">IIBBBBB", w, h, 16 if grey16 else 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", stream)
        + _chunk(b"IEND", b"")
    )
