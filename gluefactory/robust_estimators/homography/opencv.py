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

from ..opencv_common import OPENCV_METHODS, OpenCVEstimator

METHODS = {**OPENCV_METHODS, "rho": cv2.RHO}


class OpenCVHomography(OpenCVEstimator):
    default_conf = {"ransac_th": 3.0, "max_iters": 3000, "confidence": 0.995}
    methods = METHODS
    kind = "homography"
    library_call = "cv2.findHomography"

    def _estimate(self, p0, p1):
        self._seed()
        return cv2.findHomography(
            p0,
            p1,
            method=self.method,
            ransacReprojThreshold=float(self.conf.ransac_th),
            maxIters=int(self.conf.max_iters),
            confidence=float(self.conf.confidence),
        )
