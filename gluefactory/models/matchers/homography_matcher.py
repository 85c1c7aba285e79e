"""Ground-truth matches between two views related by a known homography.

Inputs: ``keypoints0`` (B, M, 2), ``keypoints1`` (B, N, 2) (library convention),
``H_0to1`` (B, 3, 3), optional ``keypoint_mask0/1`` (B, M/N) bool for padded keypoints
(non-finite coordinates are treated as padding too). Outputs ``gt_assignment`` (B, M, N)
bool, ``gt_matches0/1`` (index, -1 unmatched, -2 ignored) and ``gt_matching_scores0/1``.
See :mod:`gluefactory.geometry.gt_generation` for the labelling rule.

With ``use_lines``: also ``lines0/1`` (B, L, 2, 2), optional ``line_mask0/1`` (B, L),
and the image sizes (``view{i}.image_size`` (B, 2), else the shape of
``view{i}.image``); outputs ``gt_line_assignment`` (B, L0, L1) and
``gt_line_matches0/1`` (GlueStick's rule, :mod:`gluefactory.geometry.lines`).
``use_points: false`` labels the lines only.
"""

from __future__ import annotations

from abc import abstractmethod

import torch

from ...geometry.gt_generation import (
    gt_line_matches_from_homography,
    gt_matches_from_homography,
)
from ...utils.conf import ConfigError
from ..base_model import BaseModel, MissingDataError


class _GroundTruthMatcher(BaseModel):
    """What both ground-truth matchers share: the point thresholds, points and/or lines
    (``use_points``, ``use_lines``) and the line keys (upstream's names). Subclasses
    set :attr:`component` and implement :meth:`_points` and :meth:`_lines`."""

    default_conf = {
        "th_positive": 3.0,  # px: mutual nearest neighbours closer are positive
        "th_negative": 3.0,  # px: points farther from all others are unmatched
        "use_points": True,
        "use_lines": False,
        "n_line_sampled_pts": 50,  # samples per segment
        "line_perp_dist_th": 5.0,  # px: a sample this close to a segment is on it
        "overlap_th": 0.2,  # share of visible samples on the other segment, both ways
        "min_visibility_th": 0.5,  # share of samples inside the other image, else -1
    }
    component = ""

    def _init(self, conf) -> None:
        name = self.component
        if conf.th_negative < conf.th_positive:
            raise ConfigError(
                f"{name}: th_negative ({conf.th_negative}) must be >= th_positive "
                f"({conf.th_positive})."
            )
        for key in ("use_points", "use_lines"):
            if not isinstance(conf[key], bool):
                raise ConfigError(f"{name}: {key} must be true or false.")
        if not (conf.use_points or conf.use_lines):
            raise ConfigError(f"{name}: use_points and use_lines are both false.")
        if not isinstance(conf.n_line_sampled_pts, int) or conf.n_line_sampled_pts < 2:
            raise ConfigError(f"{name}: n_line_sampled_pts must be an integer >= 2.")
        for key in ("overlap_th", "min_visibility_th"):
            if not 0 <= conf[key] <= 1:
                raise ConfigError(f"{name}: {key} must be in [0, 1], got {conf[key]}.")
        if conf.line_perp_dist_th <= 0:
            raise ConfigError(f"{name}: line_perp_dist_th must be > 0.")
        if conf.use_points:
            self.required_data_keys += ["keypoints0", "keypoints1"]
        if conf.use_lines:
            self.required_data_keys += ["lines0", "lines1"]

    def _forward(self, data: dict) -> dict:
        result = {}
        if self.conf.use_points:
            result.update(self._points(data))
        if self.conf.use_lines:
            result.update(self._lines(data))
        return {f"gt_{k}": v for k, v in result.items()}

    def line_kwargs(self) -> dict:
        """Keyword arguments of :func:`gt_line_matches` from the config."""
        return {
            "num_samples": self.conf.n_line_sampled_pts,
            "th_dist": self.conf.line_perp_dist_th,
            "th_overlap": self.conf.overlap_th,
            "min_visible": self.conf.min_visibility_th,
        }

    @abstractmethod
    def _points(self, data: dict) -> dict:
        """Point labels (keys without the gt_ prefix)."""

    @abstractmethod
    def _lines(self, data: dict) -> dict:
        """Line labels (keys without the gt_ prefix)."""


def float_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 inputs stay float64; anything else is labelled in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class HomographyMatcher(_GroundTruthMatcher):
    required_data_keys = ["H_0to1"]
    component = "matchers.homography_matcher"

    @staticmethod
    def _labels(fn, key: str, data: dict, *args, **kwargs) -> dict:
        """``fn(x0, x1, H_0to1, *args, **kwargs)`` on ``data[key + "0/1"]``, in float32
        (float64 inputs stay float64) with autocast off."""
        x0, x1 = data[f"{key}0"], data[f"{key}1"]
        dtype = float_dtype(x0)
        with torch.autocast(device_type=x0.device.type, enabled=False):
            H = data["H_0to1"].to(dtype)
            return fn(x0.to(dtype), x1.to(dtype), H, *args, **kwargs)

    def _lines(self, data: dict) -> dict:
        return self._labels(
            gt_line_matches_from_homography,
            "lines",
            data,
            image_size(data, 0),
            image_size(data, 1),
            data.get("line_mask0"),
            data.get("line_mask1"),
            **self.line_kwargs(),
        )

    def _points(self, data: dict) -> dict:
        return self._labels(
            gt_matches_from_homography,
            "keypoints",
            data,
            th_positive=self.conf.th_positive,
            th_negative=self.conf.th_negative,
            mask0=data.get("keypoint_mask0"),
            mask1=data.get("keypoint_mask1"),
        )


def image_size(data: dict, i: int) -> torch.Tensor:
    """(B, 2) (w, h) of view i: ``view{i}.image_size``, else its image's shape."""
    view = data.get(f"view{i}", {})
    if "image_size" in view:
        return view["image_size"]
    if "image" in view:
        h, w = view["image"].shape[-2:]
        return torch.tensor([w, h], dtype=torch.float32)
    raise MissingDataError(
        f"Line ground truth needs view{i}.image_size or view{i}.image (the image "
        "extent that decides which projected samples are visible)."
    )
