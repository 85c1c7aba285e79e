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
import numpy as np

from ...geometry.homography import normalize_homography
from ...utils.conf import ConfigError
from ..base_estimator import BaseEstimator
from ..common import (
    failure,
    inlier_mask,
    input_degeneracy,
    matched_points,
    result_degeneracy,
    to_output,
)

METHODS = {
    "ransac": cv2.RANSAC,
    "lmeds": cv2.LMEDS,
    "rho": cv2.RHO,
    "usac": cv2.USAC_DEFAULT,
    "usac_fast": cv2.USAC_FAST,
    "usac_accurate": cv2.USAC_ACCURATE,
    "usac_prosac": cv2.USAC_PROSAC,
    "usac_magsac": cv2.USAC_MAGSAC,
}

MIN_POINTS = 4


class OpenCVHomography(BaseEstimator):
    default_conf = {
        "ransac_th": 3.0,
        "method": "ransac",
        "max_iters": 3000,
        "confidence": 0.995,
        "seed": 0,
    }
    required_data_keys = ["m_kpts0", "m_kpts1"]

    def _init(self, conf):
        if conf.method not in METHODS:
            raise ConfigError(
                f"OpenCVHomography: unknown method '{conf.method}'; "
                f"choose one of {', '.join(METHODS)}."
            )

    def _forward(self, data):
        k0, _, p0, p1 = matched_points(data)
        name = type(self).__name__
        reason = input_degeneracy(p0, p1, MIN_POINTS)
        if reason:
            return failure(k0, name, reason)
        if self.conf.seed is not None:
            cv2.setRNGSeed(int(self.conf.seed))
        try:
            H, mask = cv2.findHomography(
                p0,
                p1,
                method=METHODS[self.conf.method],
                ransacReprojThreshold=float(self.conf.ransac_th),
                maxIters=int(self.conf.max_iters),
                confidence=float(self.conf.confidence),
            )
        except cv2.error as e:
            return failure(k0, name, f"cv2.findHomography raised: {e}")
        if H is not None:
            with np.errstate(divide="ignore", invalid="ignore"):  # H[2, 2] = 0: inf
                H = normalize_homography(np.asarray(H, dtype=np.float64))
        inliers = inlier_mask(mask, len(p0))
        reason = result_degeneracy(H, inliers, p0, p1, MIN_POINTS, self.conf.ransac_th)
        if reason:
            return failure(k0, name, reason)
        return to_output(H, inliers, k0)
