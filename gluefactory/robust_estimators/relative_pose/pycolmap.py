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
from ..base_estimator import BaseEstimator, EstimationFailure


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
    kind = "relative_pose"
    library_call = "pycolmap.estimate_essential_matrix"

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

    def camera(self, camera: tuple[np.ndarray, tuple[int, int]]):
        """``pycolmap.Camera`` (PINHOLE) of (K (3, 3), (w, h))."""
        K, (w, h) = camera
        return self.pycolmap.Camera(
            model="PINHOLE",
            width=w,
            height=h,
            params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
        )

    def _estimate(self, p0, p1, camera0, camera1):
        answer = self.pycolmap.estimate_essential_matrix(
            p0, p1, self.camera(camera0), self.camera(camera1), self.ransac_options()
        )
        if answer is None:
            raise EstimationFailure("pycolmap found no essential matrix")
        rigid = answer["cam2_from_cam1"]
        R, t = np.asarray(rigid.rotation.matrix()), np.asarray(rigid.translation)
        return np.c_[R, t], answer["inlier_mask"]
