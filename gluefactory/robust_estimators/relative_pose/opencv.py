"""Relative pose with OpenCV: essential matrix (findEssentialMat) + recoverPose.

The keypoints (library convention, with K in the same frame) are normalised with K^-1 so
that the two cameras may differ; the threshold becomes ``ransac_th / mean(fx0, fy0, fx1,
fy1)`` in normalised units. ``findEssentialMat`` may return several stacked 3x3
candidates: each is decomposed with ``recoverPose`` (cheirality check) and the one with
the most points in front of both cameras is kept. ``inliers`` is the RANSAC mask.

Options (all forwarded): ``method`` (``ransac`` = upstream default; the USAC variants
with local optimisation, ``usac``/``usac_accurate``/``usac_fast``/``usac_prosac``, are
markedly more accurate, see docs/metrics.md), ``confidence`` (``prob``), ``max_iters``
and ``seed`` (OpenCV's global RNG is re-seeded before every call; None leaves it).
"""

from __future__ import annotations

import cv2
import numpy as np

from ..base_estimator import EstimationFailure
from ..common import inlier_mask
from ..opencv_common import OPENCV_METHODS, OpenCVEstimator

METHODS = OPENCV_METHODS


def normalize_points(p: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) -> normalised image-plane coordinates K^-1 (u, v, 1)."""
    return (p - K[:2, 2]) / np.diag(K)[:2]


class OpenCVRelativePose(OpenCVEstimator):
    default_conf = {"ransac_th": 0.5, "confidence": 0.99999, "max_iters": 1000}
    kind = "relative_pose"
    library_call = "cv2.findEssentialMat"

    def _estimate(self, p0, p1, camera0, camera1):
        (K0, _), (K1, _) = camera0, camera1
        x0, x1 = normalize_points(p0, K0), normalize_points(p1, K1)
        f_mean = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
        self._seed()
        E, mask = cv2.findEssentialMat(
            x0,
            x1,
            np.eye(3),
            method=self.method,
            prob=float(self.conf.confidence),
            threshold=float(self.conf.ransac_th) / f_mean,
            maxIters=int(self.conf.max_iters),
        )
        if E is None or E.shape[0] % 3 or not np.isfinite(E).all():
            raise EstimationFailure("no essential matrix found")
        inliers = inlier_mask(mask, len(p0)).astype(np.uint8)[:, None]
        best = None
        for E_i in np.split(E, len(E) // 3):
            try:
                n, R, t, _ = cv2.recoverPose(E_i, x0, x1, np.eye(3), mask=inliers)
            except cv2.error:
                continue
            if best is None or n > best[0]:
                best = (n, R, t[:, 0])
        if best is None:
            raise EstimationFailure("recoverPose failed on every candidate")
        _, R, t = best
        return np.c_[R, t], mask
