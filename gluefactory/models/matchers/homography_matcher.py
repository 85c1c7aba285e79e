"""Ground-truth matches between two views related by a known homography.

Inputs: ``keypoints0`` (B, M, 2), ``keypoints1`` (B, N, 2) (library convention),
``H_0to1`` (B, 3, 3), optional ``keypoint_mask0/1`` (B, M/N) bool for padded keypoints
(non-finite coordinates are treated as padding too). Outputs ``gt_assignment`` (B, M, N)
bool, ``gt_matches0/1`` (index, -1 unmatched, -2 ignored) and ``gt_matching_scores0/1``.
See :mod:`gluefactory.geometry.gt_generation` for the labelling rule.
"""

from __future__ import annotations

import torch

from ...geometry.gt_generation import gt_matches_from_homography
from ...utils.conf import ConfigError
from ..base_model import BaseModel


class HomographyMatcher(BaseModel):
    default_conf = {
        "th_positive": 3.0,  # px: mutual nearest neighbours closer are positive
        "th_negative": 3.0,  # px: points farther from all others are unmatched
    }
    required_data_keys = ["keypoints0", "keypoints1", "H_0to1"]

    def _init(self, conf) -> None:
        if conf.th_negative < conf.th_positive:
            raise ConfigError(
                f"matchers.homography_matcher: th_negative ({conf.th_negative}) "
                f"must be >= th_positive ({conf.th_positive})."
            )

    def _forward(self, data: dict) -> dict:
        kpts0, kpts1 = data["keypoints0"], data["keypoints1"]
        dtype = torch.float64 if kpts0.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=kpts0.device.type, enabled=False):
            result = gt_matches_from_homography(
                kpts0.to(dtype),
                kpts1.to(dtype),
                data["H_0to1"].to(dtype),
                th_positive=self.conf.th_positive,
                th_negative=self.conf.th_negative,
                mask0=data.get("keypoint_mask0"),
                mask1=data.get("keypoint_mask1"),
            )
        return {f"gt_{k}": v for k, v in result.items()}
