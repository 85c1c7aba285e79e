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

from ...utils.conf import ConfigError
from ..base_estimator import BaseEstimator
from ..common import (
    failure,
    inlier_mask,
    input_degeneracy,
    intrinsics,
    matched_points,
    pose_output,
    result_degeneracy,
)

METHODS = {
    "ransac": cv2.RANSAC,
    "lmeds": cv2.LMEDS,
    "usac": cv2.USAC_DEFAULT,
    "usac_fast": cv2.USAC_FAST,
    "usac_accurate": cv2.USAC_ACCURATE,
    "usac_prosac": cv2.USAC_PROSAC,
    "usac_magsac": cv2.USAC_MAGSAC,
}

MIN_POINTS = 5


def normalize_points(p: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) -> normalised image-plane coordinates K^-1 (u, v, 1)."""
    return (p - K[:2, 2]) / np.diag(K)[:2]


class OpenCVRelativePose(BaseEstimator):
    default_conf = {
        "ransac_th": 0.5,
        "method": "ransac",
        "confidence": 0.99999,
        "max_iters": 1000,
        "seed": 0,
    }
    required_data_keys = ["m_kpts0", "m_kpts1", "camera0", "camera1"]

    def _init(self, conf):
        if conf.method not in METHODS:
            raise ConfigError(
                f"OpenCVRelativePose: unknown method '{conf.method}'; "
                f"choose one of {', '.join(METHODS)}."
            )

    def _forward(self, data):
        k0, _, p0, p1 = matched_points(data)
        K0, _ = intrinsics(data["camera0"], "camera0")
        K1, _ = intrinsics(data["camera1"], "camera1")
        name = type(self).__name__
        reason = input_degeneracy(p0, p1, MIN_POINTS)
        if reason:
            return failure(k0, name, reason, pose=True)
        x0, x1 = normalize_points(p0, K0), normalize_points(p1, K1)
        f_mean = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
        if self.conf.seed is not None:
            cv2.setRNGSeed(int(self.conf.seed))
        try:
            E, mask = cv2.findEssentialMat(
                x0,
                x1,
                np.eye(3),
                method=METHODS[self.conf.method],
                prob=float(self.conf.confidence),
                threshold=float(self.conf.ransac_th) / f_mean,
                maxIters=int(self.conf.max_iters),
            )
        except cv2.error as e:
            return failure(k0, name, f"cv2.findEssentialMat raised: {e}", pose=True)
        inliers = inlier_mask(mask, len(p0))
        if E is None or E.shape[0] % 3 or not np.isfinite(E).all():
            return failure(k0, name, "no essential matrix found", pose=True)
        best = None
        for E_i in np.split(E, len(E) // 3):
            try:
                n, R, t, _ = cv2.recoverPose(
                    E_i, x0, x1, np.eye(3), mask=inliers.astype(np.uint8)[:, None]
                )
            except cv2.error:
                continue
            if best is None or n > best[0]:
                best = (n, R, t[:, 0])
        if best is None:
            return failure(k0, name, "recoverPose failed on every candidate", pose=True)
        _, R, t = best
        M = np.c_[R, t]
        reason = result_degeneracy(M, inliers, p0, p1, MIN_POINTS, self.conf.ransac_th)
        if reason:
            return failure(k0, name, reason, pose=True)
        return pose_output(R, t, inliers, k0)
