"""Homography with PoseLib's LO-RANSAC + non-linear refinement (estimate_homography).

Keypoints are fed in the library convention (a homography fitted to library coordinates
is the library-convention homography). ``ransac_th`` is PoseLib's ``max_reproj_error``
in pixels of image 1. Every key of ``ransac_options`` (PoseLib's RansacOptions) and
``bundle_options`` (BundleOptions) is forwarded by name; ``bundle_options.loss_scale:
None`` keeps PoseLib's default of half the threshold.
"""

from __future__ import annotations

import poselib

from ..base_estimator import BaseEstimator
from ..common import POSELIB_DEFAULT_CONF, check_poselib_options, poselib_options


class PoseLibHomography(BaseEstimator):
    default_conf = {"ransac_th": 2.0, **POSELIB_DEFAULT_CONF}
    kind = "homography"
    library_call = "poselib.estimate_homography"

    def _init(self, conf):
        check_poselib_options(conf, type(self).__name__)
        self.ransac_opt, self.bundle_opt = poselib_options(conf, "max_reproj_error")

    def _estimate(self, p0, p1):
        ransac_opt, bundle_opt = dict(self.ransac_opt), dict(self.bundle_opt)
        H, info = poselib.estimate_homography(p0, p1, ransac_opt, bundle_opt)
        return H, info.get("inliers")
