"""Homography with OpenCV's ``cv2.findHomography`` (RANSAC, LMedS, RHO or USAC).

Keypoints are fed in the library convention (pixel centres at +0.5): a homography fitted
to library coordinates *is* the library-convention homography (OpenCV never looks at
pixel grids here), so no conversion is needed. ``ransac_th`` is the reprojection
threshold in pixels of image 1.

Options (all forwarded): ``method`` (``ransac`` = upstream default; ``usac_magsac``,
``usac_accurate`` and ``lmeds`` are markedly more accurate on noisy matches, see
docs/metrics.md), ``max_iters``, ``confidence``, and ``seed`` (OpenCV's global RNG is
re-seeded with it before every call so results do not depend on call history; None
leaves the RNG alone).
"""

from __future__ import annotations

import cv2

from ..base_estimator import BaseEstimator
from ..common import OPENCV_METHODS, check_opencv_method, seed_opencv

METHODS = {**OPENCV_METHODS, "rho": cv2.RHO}


class OpenCVHomography(BaseEstimator):
    default_conf = {
        "ransac_th": 3.0,
        "method": "ransac",
        "max_iters": 3000,
        "confidence": 0.995,
        "seed": 0,
    }
    required_data_keys = ["m_kpts0", "m_kpts1"]
    kind = "homography"
    library_call = "cv2.findHomography"
    library_errors = (cv2.error,)

    def _init(self, conf):
        check_opencv_method(conf.method, METHODS, type(self).__name__)

    def _estimate(self, p0, p1):
        seed_opencv(self.conf.seed)
        return cv2.findHomography(
            p0,
            p1,
            method=METHODS[self.conf.method],
            ransacReprojThreshold=float(self.conf.ransac_th),
            maxIters=int(self.conf.max_iters),
            confidence=float(self.conf.confidence),
        )
