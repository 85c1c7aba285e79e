"""MegaDepth: the D2-Net preprocessing that Glue Factory distributes.

Layout under the dataset root::

    Undistorted_SfM/<scene>/images/<name>
    depth_undistorted/<scene>/<stem>.h5   (:mod:`.depth`: dataset "depth", same size as
                                           the image, metres, 0 = unknown)
    scene_info/<scene>.npz                image_paths, depth_paths (relative to the root,
                                          None for an unusable image), intrinsics (3, 3),
                                          poses (4, 4, world->camera), overlap_matrix

An image is usable when both its paths are set; only usable views are checked
(:func:`.records.check_view`) and turned into :class:`~.records.View` records.
Intrinsics come from COLMAP: their principal point is in the library convention.
``overlap_matrix[i, j]`` is the fraction of image i seen in image j (-1: unknown; see
:func:`gluefactory.geometry.depth.overlap`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..utils.errors import DataError
from ..utils.fs import atomic_path
from .depth import read_depth, write_depth  # this layout's depth I/O
from .records import View, check_view, view_problems

IMAGE_SUBPATH = "Undistorted_SfM"
DEPTH_SUBPATH = "depth_undistorted"
INFO_DIR = "scene_info"
KEYS = ("image_paths", "depth_paths", "intrinsics", "poses", "overlap_matrix")


@dataclass(eq=False)
class SceneInfo:
    """The arrays of a ``scene_info/<scene>.npz`` and the indices of usable images."""

    image_paths: np.ndarray  # (N,) object: str or None
    depth_paths: np.ndarray  # (N,) object: str or None
    intrinsics: np.ndarray  # (N, 3, 3) (object entries for unusable images)
    poses: np.ndarray  # (N, 4, 4)
    overlap_matrix: np.ndarray  # (N, N)

    @cached_property
    def valid(self) -> np.ndarray:
        """Indices of the usable images (image and depth paths set)."""
        return np.array(
            [
                i
                for i, (im, d) in enumerate(zip(self.image_paths, self.depth_paths))
                if im is not None and d is not None and str(im) and str(d)
            ],
            dtype=int,
        )

    def view(self, i: int) -> View:
        """The :class:`View` of image ``i`` (the format stores no image size)."""
        return View(
            Path(str(self.image_paths[i])).name,
            np.asarray(self.intrinsics[i], np.float64),
            np.asarray(self.poses[i], np.float64),
            None,
        )


def image_path(scene: str, name: str) -> str:
    """``image_paths`` entry of an image (relative to the root)."""
    return f"{IMAGE_SUBPATH}/{scene}/images/{name}"


def depth_path(scene: str, name: str) -> str:
    """``depth_paths`` entry of an image's depth map (relative to the root)."""
    return f"{DEPTH_SUBPATH}/{scene}/{Path(name).stem}.h5"


def read_scene_info(path: str | Path) -> SceneInfo:
    """Read and check a ``scene_info`` file (lengths, overlap shape, usable poses)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"scene_info file not found: {path}")
    try:
        with np.load(path, allow_pickle=True) as npz:
            info = SceneInfo(**{k: npz[k] for k in KEYS})
    except (KeyError, ValueError, OSError) as e:
        raise DataError(f"Corrupt or incomplete scene_info {path}: {e}") from e
    n = len(info.image_paths)
    for k in ("depth_paths", "intrinsics", "poses"):
        if len(getattr(info, k)) != n:
            raise DataError(
                f"{path}: {k} has {len(getattr(info, k))} entries, image_paths {n}."
            )
    if info.overlap_matrix.shape != (n, n):
        raise DataError(f"{path}: overlap_matrix is not {n} x {n}.")
    valid = info.valid
    if len(valid) == 0:
        return info
    try:
        K = np.stack([np.asarray(info.intrinsics[i], np.float64) for i in valid])
        T = np.stack([np.asarray(info.poses[i], np.float64) for i in valid])
        if K.shape[1:] != (3, 3) or T.shape[1:] != (4, 4):
            raise ValueError(f"shapes {K.shape[1:]}, {T.shape[1:]}")
    except (TypeError, ValueError) as e:  # None, not numeric, not 3 x 3 / 4 x 4
        raise DataError(f"{path}: a usable image has no valid K or pose: {e}") from e
    for i, problem in zip(valid, view_problems(K, T)):
        if problem:
            name = Path(str(info.image_paths[i])).name
            raise DataError(f"{path}: image {i} ({name}): {problem}")
    return info


def write_scene_info(
    path: str | Path,
    image_paths: list[str | None],
    depth_paths: list[str | None],
    views: list[View],
    overlap_matrix: np.ndarray,
) -> Path:
    """Write a ``scene_info`` file (atomically) from the views in image order."""
    for v in views:
        check_view(v, f"{path}: view {v.name}")
    n = len(views)
    sizes = (len(image_paths), len(depth_paths), *np.shape(overlap_matrix))
    if sizes != (n,) * 4:
        raise ValueError(f"{path}: {n} views need {n} paths and an {n} x {n} overlap.")
    with atomic_path(path, ".npz") as tmp:
        np.savez(
            tmp,
            image_paths=np.array(image_paths, dtype=object),
            depth_paths=np.array(depth_paths, dtype=object),
            intrinsics=np.stack([v.K for v in views]),
            poses=np.stack([v.T_w2cam for v in views]),
            overlap_matrix=np.asarray(overlap_matrix, np.float64),
        )
    return Path(path)


__all__ = [
    "KEYS",
    "SceneInfo",
    "depth_path",
    "image_path",
    "read_depth",
    "read_scene_info",
    "write_depth",
    "write_scene_info",
]
