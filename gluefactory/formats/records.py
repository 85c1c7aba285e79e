"""The records of posed data: a :class:`View` (one posed image) and a :class:`Scene`.

Every format reader returns them and every writer takes them, so that a view read from
``views.txt`` and one read from a MegaDepth ``scene_info`` are the same object with the
same checks. Conventions: ``K`` has its principal point in the library convention
(pixel centres at +0.5, as COLMAP), ``T_w2cam`` maps world to camera coordinates
(x right, y down, z forward), both float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..geometry.wrappers import Camera, Pose
from ..utils.errors import DataError

#: largest |R R^T - I| entry accepted for a rotation (text files keep ~12 digits)
ROTATION_TOL = 1e-3


@dataclass(frozen=True, eq=False)
class View:
    """One posed image: ``name``, ``K`` (3, 3), ``T_w2cam`` (4, 4), ``size`` (w, h) of
    the image the camera is for (None where the format does not store it)."""

    name: str
    K: np.ndarray
    T_w2cam: np.ndarray
    size: tuple[int, int] | None

    @classmethod
    def from_Rt(cls, name: str, K, R, t, size: tuple[int, int] | None) -> View:
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = np.asarray(R, np.float64), np.asarray(t, np.float64)
        size = None if size is None else (int(size[0]), int(size[1]))
        return cls(name, np.asarray(K, np.float64), T, size)

    @property
    def R(self) -> np.ndarray:
        return self.T_w2cam[:3, :3]

    @property
    def t(self) -> np.ndarray:
        return self.T_w2cam[:3, 3]

    def camera(self) -> Camera:
        """The pinhole :class:`Camera` (float64); needs the size."""
        if self.size is None:
            raise ValueError(f"view {self.name}: no image size, so no Camera.")
        return Camera.from_calibration_matrix(
            torch.from_numpy(self.K), torch.tensor(self.size, dtype=torch.float64)
        )

    def pose(self) -> Pose:
        """The world-to-camera :class:`Pose` (float64)."""
        return Pose.from_Rt(torch.from_numpy(self.R), torch.from_numpy(self.t))


@dataclass
class Scene:
    """Posed views of one scene and its groups (pairs, triplets) of view names."""

    name: str
    views: dict[str, View]
    groups: list[tuple[str, ...]] = field(default_factory=list)


def check_pose(R: np.ndarray, t: np.ndarray, where: str) -> None:
    """A :class:`DataError` unless ``R`` (3, 3) is a rotation and ``t`` finite."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64)
    if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t))):
        raise DataError(f"{where}: the pose has non-finite values.")
    if np.abs(R @ R.T - np.eye(3)).max() > ROTATION_TOL:
        raise DataError(f"{where}: R is not a rotation matrix (R R^T != I).")
    if np.linalg.det(R) < 0:
        raise DataError(f"{where}: R has determinant -1 (a reflection).")


def check_intrinsics(K: np.ndarray, size: tuple[int, int] | None, where: str) -> None:
    """A :class:`DataError` unless ``K`` is a finite pinhole matrix with positive focal
    lengths and ``size`` (w, h), if known, positive."""
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise DataError(f"{where}: the intrinsics are not a finite 3 x 3 matrix.")
    if K[0, 0] <= 0 or K[1, 1] <= 0 or (size is not None and min(size) <= 0):
        raise DataError(f"{where}: invalid camera size or focal length.")


def check_view(view: View, where: str) -> View:
    """The one set of checks every reader applies to a view; returns it."""
    if view.T_w2cam.shape != (4, 4):
        raise DataError(f"{where}: the pose is not a 4 x 4 matrix.")
    check_pose(view.R, view.t, where)
    check_intrinsics(view.K, view.size, where)
    return view
