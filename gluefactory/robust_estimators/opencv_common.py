"""What the OpenCV estimators share: robust methods, RNG seeding, the error type.

``method`` names an OpenCV robust method (``ransac`` is the upstream default; the USAC
variants with local optimisation are markedly more accurate, see docs/metrics.md) and
``seed`` re-seeds OpenCV's global RNG before every call, so that results do not depend
on the call history (None leaves the RNG alone).
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2

from ..utils.errors import ConfigError
from .base_estimator import BaseEstimator

#: robust methods shared by cv2.findHomography and cv2.findEssentialMat
OPENCV_METHODS: dict[str, int] = {
    "ransac": cv2.RANSAC,
    "lmeds": cv2.LMEDS,
    "usac": cv2.USAC_DEFAULT,
    "usac_fast": cv2.USAC_FAST,
    "usac_accurate": cv2.USAC_ACCURATE,
    "usac_prosac": cv2.USAC_PROSAC,
    "usac_magsac": cv2.USAC_MAGSAC,
}


class OpenCVEstimator(BaseEstimator):
    """Base of the OpenCV adapters: checks ``method``, seeds the RNG, catches cv2.error."""

    default_conf: dict[str, Any] = {"method": "ransac", "seed": 0}
    methods: ClassVar[dict[str, int]] = OPENCV_METHODS
    library_errors = (cv2.error,)

    def _init(self, conf):
        if conf.method not in self.methods:
            raise ConfigError(
                f"{type(self).__name__}: unknown method '{conf.method}'; "
                f"choose one of {', '.join(self.methods)}."
            )

    def _seed(self) -> None:
        if self.conf.seed is not None:
            cv2.setRNGSeed(int(self.conf.seed))

    @property
    def method(self) -> int:
        return self.methods[self.conf.method]
