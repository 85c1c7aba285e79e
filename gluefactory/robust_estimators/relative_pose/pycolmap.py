"""Relative pose with pycolmap 4.x: ``pycolmap.estimate_essential_matrix``.

COLMAP's LO-RANSAC on the essential matrix followed by the cheirality-checked
decomposition, with PINHOLE cameras. COLMAP uses the library's pixel convention
(centres at +0.5), so keypoints and K are passed unchanged. ``ransac_th`` is
``RANSACOptions.max_error`` in pixels (COLMAP converts it with the focal lengths).
Every key of ``ransac_options`` is set on ``pycolmap.RANSACOptions``; ``random_seed: 0``
makes runs reproducible (COLMAP's own default, -1, seeds from the clock).

The ``two_view_geometry_estimation`` / ``qvec_to_rotmat`` API used by glue-factory
upstream no longer exists in pycolmap 4.x. pycolmap is an optional dependency
(``pip install gluefactory[extra]``).
"""

from __future__ import annotations

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

MIN_POINTS = 5


def _import_pycolmap():
    try:
        import pycolmap
    except ImportError as e:
        raise ImportError(
            "The relative_pose/pycolmap estimator needs pycolmap 4.x "
            "(pip install pycolmap, or gluefactory[extra])."
        ) from e
    return pycolmap


class PycolmapRelativePose(BaseEstimator):
    default_conf = {
        "ransac_th": 4.0,
        "ransac_options": {
            "min_inlier_ratio": 0.01,
            "confidence": 0.9999,
            "dyn_num_trials_multiplier": 3.0,
            "min_num_trials": 1000,
            "max_num_trials": 100000,
            "random_seed": 0,
            "num_threads": 1,
        },
    }
    required_data_keys = ["m_kpts0", "m_kpts1", "camera0", "camera1"]

    def _init(self, conf):
        self.pycolmap = _import_pycolmap()
        known = set(dir(self.pycolmap.RANSACOptions()))
        unknown = sorted(set(conf.ransac_options.keys()) - known)
        if unknown:
            raise ConfigError(
                f"PycolmapRelativePose: ransac_options {unknown} are not fields of "
                "pycolmap.RANSACOptions in the installed pycolmap."
            )

    def ransac_options(self):
        """``pycolmap.RANSACOptions``: every configured field, max_error = ransac_th."""
        options = self.pycolmap.RANSACOptions()
        for key, value in self.conf.ransac_options.items():
            setattr(options, key, value)
        options.max_error = float(self.conf.ransac_th)
        return options

    def camera(self, data: dict, key: str):
        K, (w, h) = intrinsics(data[key], key)
        return self.pycolmap.Camera(
            model="PINHOLE",
            width=w,
            height=h,
            params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
        )

    def _forward(self, data):
        k0, _, p0, p1 = matched_points(data)
        cam0, cam1 = self.camera(data, "camera0"), self.camera(data, "camera1")
        name = type(self).__name__
        reason = input_degeneracy(p0, p1, MIN_POINTS)
        if reason:
            return failure(k0, name, reason, pose=True)
        try:
            answer = self.pycolmap.estimate_essential_matrix(
                p0, p1, cam0, cam1, self.ransac_options()
            )
        except (RuntimeError, ValueError) as e:
            return failure(
                k0, name, f"pycolmap.estimate_essential_matrix raised: {e}", pose=True
            )
        if answer is None:
            return failure(k0, name, "pycolmap found no essential matrix", pose=True)
        rigid = answer["cam2_from_cam1"]
        R, t = np.asarray(rigid.rotation.matrix()), np.asarray(rigid.translation)
        inliers = inlier_mask(answer["inlier_mask"], len(p0))
        reason = result_degeneracy(
            np.c_[R, t], inliers, p0, p1, MIN_POINTS, self.conf.ransac_th
        )
        if reason:
            return failure(k0, name, reason, pose=True)
        return pose_output(R, t, inliers, k0)
