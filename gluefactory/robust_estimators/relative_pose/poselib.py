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
from ..common import POSELIB_DEFAULT_CONF, check_poselib_options, poselib_options


def pinhole_dict(K: np.ndarray, size: tuple[int, int]) -> dict:
    """PoseLib camera dict of a pinhole K (3, 3) and image size (w, h)."""
    return {
        "model": "PINHOLE",
        "width": int(size[0]),
        "height": int(size[1]),
        "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
    }


class PoseLibRelativePose(BaseEstimator):
    default_conf = {"ransac_th": 2.0, **POSELIB_DEFAULT_CONF}
    kind = "relative_pose"
    library_call = "poselib.estimate_relative_pose"

    def _init(self, conf):
        check_poselib_options(conf, type(self).__name__)
        self.ransac_opt, self.bundle_opt = poselib_options(conf, "max_epipolar_error")

    def _estimate(self, p0, p1, camera0, camera1):
        ransac_opt, bundle_opt = dict(self.ransac_opt), dict(self.bundle_opt)
        pose, info = poselib.estimate_relative_pose(
            p0,
            p1,
            pinhole_dict(*camera0),
            pinhole_dict(*camera1),
            ransac_opt,
            bundle_opt,
        )
        return np.c_[np.asarray(pose.R), np.asarray(pose.t)], info.get("inliers")
