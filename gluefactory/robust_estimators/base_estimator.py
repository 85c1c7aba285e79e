"""Base class of robust estimators (homography, relative pose).

Input: ``m_kpts0``, ``m_kpts1`` (N x 2 matched keypoints, library pixel convention) and,
for relative pose, ``camera0``/``camera1``. Output: ``success`` (bool), ``M_0to1`` (3x3
homography or a Pose) and ``inliers`` (N bool). Every key of the config is an option of
the estimator; an estimator never raises on degenerate input but reports failure.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

from ..utils.conf import Configurable, to_conf
from ..utils.data import check_data_keys
from ..utils.registry import list_names, load_class


class BaseEstimator(Configurable, metaclass=ABCMeta):
    """Configurable estimator (config: :class:`~gluefactory.utils.conf.Configurable`)."""

    default_conf: dict[str, Any] = {"name": None, "ransac_th": 1.0}
    required_data_keys: list[str] = []

    def __init__(self, conf: Any = None):
        self.conf = self.build_conf(conf)
        self._init(self.conf)

    def _init(self, conf) -> None:
        pass

    def __call__(self, data: dict) -> dict:
        check_data_keys(type(self).__name__, self.required_data_keys, data)
        return self._forward(data)

    @abstractmethod
    def _forward(self, data: dict) -> dict: ...


def get_estimator(kind: str, name: str) -> type[BaseEstimator]:
    """``get_estimator("homography", "poselib")``, or a dotted module path as ``name``."""
    search = [f"gluefactory.robust_estimators.{kind}"]
    return load_class(name, BaseEstimator, search, "estimator")


def load_estimator(kind: str, conf: Any) -> BaseEstimator:
    """Build the estimator named by ``conf.name`` with the rest of ``conf`` as options."""
    conf = to_conf(conf)
    return get_estimator(kind, conf.name)(conf)


def list_estimators(kind: str) -> list[str]:
    return list_names(
        BaseEstimator, [f"gluefactory.robust_estimators.{kind}"], "estimator"
    )
