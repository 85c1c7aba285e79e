"""Depth map files, the one rule for unknown depth and the one resize rule.

A depth map holds, per pixel, the z coordinate of the surface in the camera frame, in
the units of the poses (metres for MegaDepth and the built-in sets); 0 means unknown,
and so does any non-finite or negative value read from a file. Two encodings:

- ``h5``: HDF5 dataset ``depth`` (float32), the key MegaDepth uses; any other key is
  an error, never a guess;
- ``png``: 16-bit PNG holding ``round(depth * 256)`` (1/256 unit steps, at most 256
  units).

Resizing uses ``nearest-exact``: each output pixel takes the input pixel under its
centre (no mixing across depth edges, no half-pixel shift).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..utils.errors import DataError
from ..utils.fs import atomic_path

DEPTH_KEY = "depth"
PNG_SCALE = 256.0
FORMATS = ("h5", "png")
RESIZE_MODE = "nearest-exact"


def depth_format(path: str | Path) -> str:
    """``h5`` or ``png`` from a file name; anything else is a :class:`DataError`."""
    fmt = Path(path).suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise DataError(f"Depth file {path}: unknown format (expected .h5 or .png).")
    return fmt


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """float32 copy with every non-finite or non-positive value set to 0 (unknown)."""
    depth = np.asarray(depth, np.float32)
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0).astype(np.float32)


def read_depth(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Depth map (H, W) float32, 0 where unknown; ``size`` (w, h) is checked if given."""
    path = Path(path)
    fmt = depth_format(path)
    if not path.is_file():
        raise DataError(f"Depth file not found: {path}")
    if fmt == "h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                if DEPTH_KEY not in f:
                    raise DataError(
                        f"Depth file {path} has no dataset {DEPTH_KEY!r} (has {list(f)})."
                    )
                depth = np.asarray(f[DEPTH_KEY], dtype=np.float32)
        except OSError as e:
            raise DataError(f"Cannot read the depth file {path}: {e}") from None
    else:
        import cv2

        raw = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH)
        if raw is None:
            raise DataError(f"Cannot read the depth PNG {path} (corrupt or not a PNG).")
        depth = raw.astype(np.float32) / PNG_SCALE
    if depth.ndim != 2:
        raise DataError(f"Depth map {path} must be 2-D, got shape {depth.shape}.")
    if size is not None and depth.shape != (size[1], size[0]):
        raise DataError(
            f"Depth map {path} is {depth.shape[1]}x{depth.shape[0]} but its image is "
            f"{size[0]}x{size[1]}."
        )
    return clean_depth(depth)


def write_depth(path: str | Path, depth: np.ndarray) -> Path:
    """Write a depth map (unknown as 0) atomically, in the format of ``path``'s suffix.

    HDF5 files are gzip-compressed without timestamps, so the same map gives the same
    bytes. PNG needs depths below ``65536 / 256`` units.
    """
    path = Path(path)
    fmt = depth_format(path)
    depth = clean_depth(depth)
    if depth.ndim != 2:
        raise ValueError(f"A depth map is 2-D, got shape {depth.shape}.")
    with atomic_path(path, path.suffix) as tmp:
        if fmt == "h5":
            import h5py

            with h5py.File(tmp, "w", track_order=False) as f:
                f.create_dataset(
                    DEPTH_KEY, data=depth, compression="gzip", compression_opts=4,
                    track_times=False,
                )  # fmt: skip
        else:
            import cv2

            if not cv2.imwrite(str(tmp), png_values(depth, path)):
                raise OSError(f"could not write {path}")
    return path


def png_values(depth: np.ndarray, path: str | Path = "depth") -> np.ndarray:
    """The uint16 values a depth PNG holds for ``depth`` (cleaned): ``round(depth *
    256)``; a depth beyond what 16 bits hold is a :class:`DataError` naming ``path``."""
    depth = clean_depth(depth)
    raw = np.round(depth * PNG_SCALE)
    if raw.max(initial=0) > np.iinfo(np.uint16).max:
        raise DataError(
            f"{path}: depth {depth.max():.1f} exceeds what a 16-bit PNG holds "
            f"({np.iinfo(np.uint16).max / PNG_SCALE:.1f}); write .h5 instead."
        )
    return raw.astype(np.uint16)


def resize_depth(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Depth (H, W) resized to ``size`` = (h, w) with the one rule (``nearest-exact``)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    return F.interpolate(depth[None, None], size=tuple(size), mode=RESIZE_MODE)[0, 0]
