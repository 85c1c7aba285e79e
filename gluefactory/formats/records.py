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


def view_problems(
    K: np.ndarray, T_w2cam: np.ndarray, size: np.ndarray | None = None
) -> np.ndarray:
    """What is wrong with each of M views ('' where nothing): the one set of checks.

    ``K`` (M, 3, 3), ``T_w2cam`` (M, 4, 4), ``size`` (M, 2) (w, h) or None. A pose must
    be finite with R a rotation (``|R R^T - I| <= ROTATION_TOL``, det +1), K finite with
    positive focal lengths, the size positive. Vectorised: MegaDepth scenes hold
    thousands of views.
    """
    K, T = np.asarray(K, np.float64), np.asarray(T_w2cam, np.float64)
    R, t = T[:, :3, :3], T[:, :3, 3]
    with np.errstate(invalid="ignore"):
        err = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max((1, 2))
        det = np.linalg.det(np.nan_to_num(R))
        positive = (K[:, 0, 0] > 0) & (K[:, 1, 1] > 0)
        if size is not None:
            positive &= (np.asarray(size) > 0).all(-1)
    problems = np.full(len(K), "", dtype=object)  # the first failing check wins
    problems[~positive] = "invalid camera size or focal length."
    problems[~np.isfinite(K).all((1, 2))] = "the intrinsics are not finite."
    problems[det < 0] = "R has determinant -1 (a reflection)."
    problems[err > ROTATION_TOL] = "R is not a rotation matrix (R R^T != I)."
    problems[~(np.isfinite(R).all((1, 2)) & np.isfinite(t).all(1))] = (
        "the pose has non-finite values."
    )
    return problems


def check_view(view: View, where: str) -> View:
    """:func:`view_problems` of one view as a :class:`DataError`; returns the view."""
    if np.shape(view.K) != (3, 3) or np.shape(view.T_w2cam) != (4, 4):
        raise DataError(f"{where}: K must be 3 x 3 and T_w2cam 4 x 4.")
    size = None if view.size is None else np.asarray([view.size])
    problem = view_problems(view.K[None], view.T_w2cam[None], size)[0]
    if problem:
        raise DataError(f"{where}: {problem}")
    return view
