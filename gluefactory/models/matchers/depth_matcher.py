"""Ground-truth matches from depth maps, cameras and relative pose (MegaDepth style).

Inputs: ``keypoints0/1`` (B, M/N, 2) (library convention), ``view0/1.camera``
(:class:`~gluefactory.geometry.wrappers.Camera`, batch (B,)), ``T_0to1`` (and
``T_1to0``, else its inverse) as :class:`~gluefactory.geometry.wrappers.Pose`, and per
view either ``view{i}.depth`` (B, H, W) or cached keypoint depths
``depth_keypoints{i}`` / ``valid_depth_keypoints{i}`` (B, N). Optional
``keypoint_mask0/1`` (B, M/N) mark real (non-padded) keypoints.

Outputs ``gt_assignment`` (B, M, N), ``gt_matches0/1`` (-1 unmatched, -2 ignored) and
``gt_matching_scores0/1``; see :mod:`gluefactory.geometry.gt_generation`.

``th_epi`` (px) really is the threshold of the epipolar negatives; upstream Glue Factory
compares against ``th_negative`` there and uses ``th_epi`` only as an on/off switch.
``occlusion_tol`` (relative depth, off by default as upstream) additionally drops points
hidden behind the other view's depth surface from the positives.

With ``use_lines``: also ``lines0/1`` (B, L, 2, 2) and optional ``line_mask0/1``; needs
the depth maps ``view{i}.depth``. Outputs ``gt_line_assignment`` and
``gt_line_matches0/1`` (GlueStick's rule, :mod:`gluefactory.geometry.lines`); lines with
less than ``min_valid_depth_th`` of their samples on known depth are ignored (-2).
"""

from __future__ import annotations

import torch

from ...geometry.gt_generation import (
    gt_line_matches_from_pose_depth,
    gt_matches_from_pose_depth,
)
from ...geometry.wrappers import Pose
from ...utils.conf import ConfigError
from ..base_model import MissingDataError
from .homography_matcher import _GroundTruthMatcher, float_dtype


class DepthMatcher(_GroundTruthMatcher):
    default_conf = {
        "th_positive": 3.0,  # px
        "th_negative": 5.0,  # px
        "th_epi": 5.0,  # px, None disables the epipolar negatives
        "th_consistency": None,  # px, None disables the cycle-consistency check
        "occlusion_tol": None,  # relative depth tolerance, None disables
        "min_valid_depth_th": 0.5,  # lines: share of samples with known depth, else -2
    }
    required_data_keys = ["view0", "view1", "T_0to1"]
    component = "matchers.depth_matcher"

    def _init(self, conf) -> None:
        super()._init(conf)
        if not 0 <= conf.min_valid_depth_th <= 1:
            raise ConfigError(
                "matchers.depth_matcher: min_valid_depth_th must be in [0, 1], got "
                f"{conf.min_valid_depth_th}."
            )

    def _view_inputs(self, data: dict, i: int):
        view = data[f"view{i}"]
        if "camera" not in view:
            raise MissingDataError(f"matchers.depth_matcher needs view{i}.camera.")
        cached = None
        if f"depth_keypoints{i}" in data:
            d = data[f"depth_keypoints{i}"]
            v = data.get(f"valid_depth_keypoints{i}", d > 0)
            cached = (d, v)
        elif "depth" not in view:
            raise MissingDataError(
                f"matchers.depth_matcher needs view{i}.depth or depth_keypoints{i}."
            )
        return view["camera"], view.get("depth"), cached

    def _lines(self, data: dict) -> dict:
        lines0, lines1 = data["lines0"], data["lines1"]
        dtype = float_dtype(lines0)
        views = [data["view0"], data["view1"]]
        for i, view in enumerate(views):
            for key in ("camera", "depth"):
                if key not in view:
                    raise MissingDataError(
                        f"matchers.depth_matcher with use_lines needs view{i}.{key}."
                    )
        T_0to1, T_1to0 = _as_pose(data["T_0to1"]), _as_pose(data.get("T_1to0"))
        with torch.autocast(device_type=lines0.device.type, enabled=False):
            return gt_line_matches_from_pose_depth(
                lines0.to(dtype),
                lines1.to(dtype),
                views[0]["camera"].to(dtype),
                views[1]["camera"].to(dtype),
                T_0to1.to(dtype),
                views[0]["depth"].to(dtype),
                views[1]["depth"].to(dtype),
                None if T_1to0 is None else T_1to0.to(dtype),
                data.get("line_mask0"),
                data.get("line_mask1"),
                min_valid=self.conf.min_valid_depth_th,
                **self.line_kwargs(),
            )

    def _points(self, data: dict) -> dict:
        kpts0, kpts1 = data["keypoints0"], data["keypoints1"]
        dtype = float_dtype(kpts0)
        cam0, depth0, cached0 = self._view_inputs(data, 0)
        cam1, depth1, cached1 = self._view_inputs(data, 1)

        def f(x):
            return None if x is None else x.to(dtype)

        T_0to1, T_1to0 = _as_pose(data["T_0to1"]), _as_pose(data.get("T_1to0"))
        with torch.autocast(device_type=kpts0.device.type, enabled=False):
            return gt_matches_from_pose_depth(
                kpts0.to(dtype),
                kpts1.to(dtype),
                cam0.to(dtype),
                cam1.to(dtype),
                T_0to1.to(dtype),
                None if T_1to0 is None else T_1to0.to(dtype),
                depth0=f(depth0),
                depth1=f(depth1),
                th_positive=self.conf.th_positive,
                th_negative=self.conf.th_negative,
                th_epi=self.conf.th_epi,
                th_consistency=self.conf.th_consistency,
                occlusion_tol=self.conf.occlusion_tol,
                mask0=data.get("keypoint_mask0"),
                mask1=data.get("keypoint_mask1"),
                depth_keypoints0=None
                if cached0 is None
                else (f(cached0[0]), cached0[1]),
                depth_keypoints1=None
                if cached1 is None
                else (f(cached1[0]), cached1[1]),
            )


def _as_pose(T):
    """Accept a Pose or (B, 4, 4) matrices."""
    if T is None or isinstance(T, Pose):
        return T
    return Pose.from_4x4mat(T)
