"""Homography with PoseLib's LO-RANSAC + non-linear refinement (estimate_homography).

Keypoints are fed in the library convention (a homography fitted to library coordinates
is the library-convention homography). ``ransac_th`` is PoseLib's ``max_reproj_error``
in pixels of image 1. Every key of ``ransac_options`` (PoseLib's RansacOptions) and
``bundle_options`` (BundleOptions) is forwarded by name; ``bundle_options.loss_scale:
None`` keeps PoseLib's default of half the threshold.
"""

from __future__ import annotations

import numpy as np
import poselib

from ...geometry.homography import normalize_homography
from ..base_estimator import BaseEstimator
from ..common import (
    POSELIB_BUNDLE_OPTIONS,
    POSELIB_RANSAC_OPTIONS,
    check_poselib_options,
    failure,
    inlier_mask,
    input_degeneracy,
    matched_points,
    poselib_options,
    result_degeneracy,
    to_output,
)

MIN_POINTS = 4


class PoseLibHomography(BaseEstimator):
    default_conf = {
        "ransac_th": 2.0,
        "ransac_options": POSELIB_RANSAC_OPTIONS,
        "bundle_options": POSELIB_BUNDLE_OPTIONS,
    }
    required_data_keys = ["m_kpts0", "m_kpts1"]

    def _init(self, conf):
        check_poselib_options(conf, type(self).__name__)
        self.ransac_opt, self.bundle_opt = poselib_options(conf, "max_reproj_error")

    def _forward(self, data):
        k0, _, p0, p1 = matched_points(data)
        name = type(self).__name__
        reason = input_degeneracy(p0, p1, MIN_POINTS)
        if reason:
            return failure(k0, name, reason)
        ransac_opt, bundle_opt = dict(self.ransac_opt), dict(self.bundle_opt)
        try:
            H, info = poselib.estimate_homography(p0, p1, ransac_opt, bundle_opt)
        except (RuntimeError, ValueError) as e:
            return failure(k0, name, f"poselib.estimate_homography raised: {e}")
        if H is not None:
            with np.errstate(divide="ignore", invalid="ignore"):  # H[2, 2] = 0: inf
                H = normalize_homography(np.asarray(H, dtype=np.float64))
        inliers = inlier_mask(info.get("inliers"), len(p0))
        reason = result_degeneracy(H, inliers, p0, p1, MIN_POINTS, self.conf.ransac_th)
        if reason:
            return failure(k0, name, reason)
        return to_output(H, inliers, k0)
