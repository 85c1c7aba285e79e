"""Base class of robust estimators (homography, relative pose), and their registry.

Input: ``m_kpts0``, ``m_kpts1`` (N x 2 matched keypoints, library pixel convention; a
batch of one pair is accepted) and, for relative pose, ``camera0``/``camera1``. Output:
``success`` (bool), ``M_0to1`` (3x3 homography or a Pose) and ``inliers`` (N bool). An
estimator with ``uses_lines`` also takes the optional matched segments ``m_lines0``,
``m_lines1`` (M x 2 x 2 endpoints, pixels) and also returns ``line_inliers`` (M bool).
Every key of the config is an option of the estimator; an estimator never raises on
degenerate input but reports failure (see :mod:`~gluefactory.robust_estimators.common`).

:meth:`BaseEstimator._forward` is a template method shared by every library adapter:
check the input -> reject degenerate input -> :meth:`~BaseEstimator._estimate` (the only
library-specific step) -> reject degenerate results -> pack the output or the failure.
An estimator that does not fit it (the non-robust DLT) overrides ``_forward``.
"""

from __future__ import annotations

from abc import ABCMeta
from typing import Any, ClassVar

import numpy as np
import torch

from ..geometry.homography import normalize_homography
from ..utils.conf import ConfigError, Configurable, to_conf
from ..utils.data import check_data_keys
from ..utils.registry import Alias, list_names, load_class
from .common import (
    failure,
    inlier_mask,
    input_degeneracy,
    intrinsics,
    matched_lines,
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


#: upstream glue-factory's estimator names -> ours, per kind (docs/architecture.md)
ALIASES: dict[str, dict[str, Alias]] = {
    "homography": {
        "homography_est": Alias(
            target="point_line",
            source="upstream glue-factory: rpautrat/homography_est (Ceres), ours instead",
            dropped={"options": "homography_est was called without options"},
        ),
    },
    "relative_pose": {},
}


class EstimationFailure(Exception):
    """Raised by :meth:`BaseEstimator._estimate` when the library finds no model."""


class BaseEstimator(Configurable, metaclass=ABCMeta):
    """Configurable estimator (config: :class:`~gluefactory.utils.conf.Configurable`).

    Subclasses set ``kind`` (which fixes the required input keys, ``REQUIRED_KEYS``;
    ``required_data_keys`` lists any extra ones) and implement :meth:`_estimate`; ``library_errors`` are the
    exceptions of the library that mean "no estimate" (reported as a failure naming
    ``library_call``, never raised). With ``uses_lines``, the matched segments are
    passed on to :meth:`_estimate` after the points (empty (0, 2, 2) when absent).
    """

    default_conf: dict[str, Any] = {"name": None, "ransac_th": 1.0}
    required_data_keys: list[str] = []
    kind: ClassVar[str] = "homography"
    uses_lines: ClassVar[bool] = False
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
        self, p0: np.ndarray, p1: np.ndarray, *extra: Any
    ) -> tuple[np.ndarray, Any]:
        """Run the library on matches p0, p1 (N, 2) float64 (non-degenerate).

        ``extra``: for relative pose the cameras, ((K0 (3, 3), (w0, h0)), (K1, (w1,
        h1))); with ``uses_lines`` the segments lines0, lines1 (M, 2, 2) float64.
        Returns (model, inliers): a 3x3 homography, or [R | t] (3, 4) from camera 0 to
        camera 1; inliers in any form :func:`~.common.inlier_mask` reads, over the N
        points then (with ``uses_lines``) the M lines. Raise
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
        lines = matched_lines(data) if self.uses_lines else ()
        n, m = len(p0), len(lines[0]) if lines else 0
        M, inliers, line_inliers = None, None, None
        reason = input_degeneracy(p0, p1, self.min_points, *lines)
        if reason is None:
            try:
                M, inliers = self._estimate(p0, p1, *cameras, *lines)
            except EstimationFailure as e:
                reason = str(e)
            except self.library_errors as e:
                reason = f"{self.library_call} raised: {e}"
        if reason is None:
            inliers = inlier_mask(inliers, n + m)
            inliers, line_inliers = inliers[:n], (inliers[n:] if lines else None)
            if M is not None and not pose:
                with np.errstate(divide="ignore", invalid="ignore"):  # H[2, 2] = 0
                    M = normalize_homography(np.asarray(M, dtype=np.float64))
            reason = result_degeneracy(
                M, inliers, p0, p1, self.min_points, self.conf.ransac_th, line_inliers
            )
        if reason is not None:
            out = failure(k0, type(self).__name__, reason, pose=pose)
            line_inliers = np.zeros(m, bool)
        elif pose:
            out = pose_output(M[:, :3], M[:, 3], inliers, k0)
        else:
            out = to_output(M, inliers, k0)
        if lines:
            out["line_inliers"] = torch.as_tensor(line_inliers, device=k0.device)
        return out


def get_estimator(kind: str, name: str) -> type[BaseEstimator]:
    """``get_estimator("homography", "poselib")``, an alias of :data:`ALIASES`
    (``homography_est``), or a dotted module path as ``name``."""
    if kind not in KINDS:
        raise ConfigError(
            f"Unknown estimator kind {kind!r}; expected one of {', '.join(KINDS)}."
        )
    search = [f"gluefactory.robust_estimators.{kind}"]
    return load_class(name, BaseEstimator, search, "estimator", aliases=ALIASES[kind])


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
