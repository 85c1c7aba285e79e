"""Relative pose with PoseLib's LO-RANSAC + LM refinement (``estimate_relative_pose``).

Cameras are passed as PINHOLE dicts (fx, fy, cx, cy and the image size) with keypoints
in the library convention (K is in the same frame). ``ransac_th`` is PoseLib's
``max_epipolar_error`` **in pixels**. Every key of ``ransac_options`` (RansacOptions)
and ``bundle_options`` (BundleOptions) is forwarded by name;
``bundle_options.loss_scale: None`` keeps PoseLib's default of half the threshold.
"""

from __future__ import annotations

import numpy as np
import poselib

from ..base_estimator import BaseEstimator
from ..common import (
    POSELIB_BUNDLE_OPTIONS,
    POSELIB_RANSAC_OPTIONS,
    check_poselib_options,
    failure,
    inlier_mask,
    input_degeneracy,
    intrinsics,
    matched_points,
    pose_output,
    poselib_options,
    result_degeneracy,
)

MIN_POINTS = 5


def pinhole_dict(K: np.ndarray, size: tuple[int, int]) -> dict:
    """PoseLib camera dict of a pinhole K (3, 3) and image size (w, h)."""
    return {
        "model": "PINHOLE",
        "width": int(size[0]),
        "height": int(size[1]),
        "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
    }


class PoseLibRelativePose(BaseEstimator):
    default_conf = {
        "ransac_th": 2.0,
        "ransac_options": POSELIB_RANSAC_OPTIONS,
        "bundle_options": POSELIB_BUNDLE_OPTIONS,
    }
    required_data_keys = ["m_kpts0", "m_kpts1", "camera0", "camera1"]

    def _init(self, conf):
        check_poselib_options(conf, type(self).__name__)
        self.ransac_opt, self.bundle_opt = poselib_options(conf, "max_epipolar_error")

    def _forward(self, data):
        k0, _, p0, p1 = matched_points(data)
        cam0 = pinhole_dict(*intrinsics(data["camera0"], "camera0"))
        cam1 = pinhole_dict(*intrinsics(data["camera1"], "camera1"))
        name = type(self).__name__
        reason = input_degeneracy(p0, p1, MIN_POINTS)
        if reason:
            return failure(k0, name, reason, pose=True)
        ransac_opt, bundle_opt = dict(self.ransac_opt), dict(self.bundle_opt)
        try:
            pose, info = poselib.estimate_relative_pose(
                p0, p1, cam0, cam1, ransac_opt, bundle_opt
            )
        except (RuntimeError, ValueError) as e:
            return failure(
                k0, name, f"poselib.estimate_relative_pose raised: {e}", pose=True
            )
        R, t = np.asarray(pose.R), np.asarray(pose.t)
        inliers = inlier_mask(info.get("inliers"), len(p0))
        reason = result_degeneracy(
            np.c_[R, t], inliers, p0, p1, MIN_POINTS, self.conf.ransac_th
        )
        if reason:
            return failure(k0, name, reason, pose=True)
        return pose_output(R, t, inliers, k0)
