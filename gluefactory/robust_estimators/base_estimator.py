"""Base class of robust estimators (homography, relative pose), and their registry.

Input: ``m_kpts0``, ``m_kpts1`` (N x 2 matched keypoints, library pixel convention; a
batch of one pair is accepted) and, for relative pose, ``camera0``/``camera1``. Output:
``success`` (bool), ``M_0to1`` (3x3 homography or a Pose) and ``inliers`` (N bool). Every
key of the config is an option of the estimator; an estimator never raises on degenerate
input but reports failure (see :mod:`~gluefactory.robust_estimators.common`).

:meth:`BaseEstimator._forward` is a template method shared by every library adapter:
check the input -> reject degenerate input -> :meth:`~BaseEstimator._estimate` (the only
library-specific step) -> reject degenerate results -> pack the output or the failure.
An estimator that does not fit it (the non-robust DLT) overrides ``_forward``.
"""

from __future__ import annotations

from abc import ABCMeta
from typing import Any, ClassVar

import numpy as np

from ..geometry.homography import normalize_homography
from ..utils.conf import ConfigError, Configurable, to_conf
from ..utils.data import check_data_keys
from ..utils.registry import list_names, load_class
from .common import (
    failure,
    inlier_mask,
    input_degeneracy,
    intrinsics,
    matched_points,
    pose_output,
    result_degeneracy,
    to_output,
)

KINDS = ("homography", "relative_pose")
#: minimal sample of each kind of model (4 points for H, 5 for an essential matrix)
MIN_POINTS = {"homography": 4, "relative_pose": 5}
#: input keys every estimator of a kind needs
REQUIRED_KEYS = {
    "homography": ["m_kpts0", "m_kpts1"],
    "relative_pose": ["m_kpts0", "m_kpts1", "camera0", "camera1"],
}


class EstimationFailure(Exception):
    """Raised by :meth:`BaseEstimator._estimate` when the library finds no model."""


class BaseEstimator(Configurable, metaclass=ABCMeta):
    """Configurable estimator (config: :class:`~gluefactory.utils.conf.Configurable`).

    Subclasses set ``kind`` (which fixes the required input keys, ``REQUIRED_KEYS``;
    ``required_data_keys`` lists any extra ones) and implement :meth:`_estimate`; ``library_errors`` are the
    exceptions of the library that mean "no estimate" (reported as a failure naming
    ``library_call``, never raised).
    """

    default_conf: dict[str, Any] = {"name": None, "ransac_th": 1.0}
    required_data_keys: list[str] = []
    kind: ClassVar[str] = "homography"
    library_call: ClassVar[str] = "the estimator"
    library_errors: ClassVar[tuple[type[BaseException], ...]] = (
        RuntimeError,
        ValueError,
    )

    def __init__(self, conf: Any = None):
        self.conf = self.build_conf(conf)
        self._init(self.conf)

    def _init(self, conf) -> None:
        pass

    @property
    def min_points(self) -> int:
        return MIN_POINTS[self.kind]

    def __call__(self, data: dict) -> dict:
        required = REQUIRED_KEYS[self.kind] + list(self.required_data_keys)
        check_data_keys(type(self).__name__, required, data)
        return self._forward(data)

    def _estimate(
        self, p0: np.ndarray, p1: np.ndarray, *cameras: tuple[np.ndarray, tuple]
    ) -> tuple[np.ndarray, Any]:
        """Run the library on matches p0, p1 (N, 2) float64 (non-degenerate).

        ``cameras``: for relative pose, ((K0 (3, 3), (w0, h0)), (K1, (w1, h1))).
        Returns (model, inliers): a 3x3 homography, or [R | t] (3, 4) from camera 0 to
        camera 1; inliers in any form :func:`~.common.inlier_mask` reads. Raise
        :class:`EstimationFailure` (or one of ``library_errors``) when there is none.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _estimate")

    def _forward(self, data: dict) -> dict:
        k0, _, p0, p1 = matched_points(data)
        pose = self.kind == "relative_pose"
        cameras = (
            (
                intrinsics(data["camera0"], "camera0"),
                intrinsics(data["camera1"], "camera1"),
            )
            if pose
            else ()
        )
        M, inliers = None, None
        reason = input_degeneracy(p0, p1, self.min_points)
        if reason is None:
            try:
                M, inliers = self._estimate(p0, p1, *cameras)
            except EstimationFailure as e:
                reason = str(e)
            except self.library_errors as e:
                reason = f"{self.library_call} raised: {e}"
        if reason is None:
            inliers = inlier_mask(inliers, len(p0))
            if M is not None and not pose:
                with np.errstate(divide="ignore", invalid="ignore"):  # H[2, 2] = 0
                    M = normalize_homography(np.asarray(M, dtype=np.float64))
            reason = result_degeneracy(
                M, inliers, p0, p1, self.min_points, self.conf.ransac_th
            )
        if reason is not None:
            return failure(k0, type(self).__name__, reason, pose=pose)
        if pose:
            return pose_output(M[:, :3], M[:, 3], inliers, k0)
        return to_output(M, inliers, k0)


def get_estimator(kind: str, name: str) -> type[BaseEstimator]:
    """``get_estimator("homography", "poselib")``, or a dotted module path as ``name``."""
    if kind not in KINDS:
        raise ConfigError(
            f"Unknown estimator kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    search = [f"gluefactory.robust_estimators.{kind}"]
    return load_class(name, BaseEstimator, search, "estimator")


def load_estimator(kind: str, conf: Any) -> BaseEstimator:
    """Build the estimator named by ``conf.name`` with the rest of ``conf`` as options."""
    conf = to_conf(conf)
    return get_estimator(kind, conf.name)(conf)


def list_estimators(kind: str) -> list[str]:
    if kind not in KINDS:
        raise ConfigError(
            f"Unknown estimator kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    return list_names(
        BaseEstimator, [f"gluefactory.robust_estimators.{kind}"], "estimator"
    )
