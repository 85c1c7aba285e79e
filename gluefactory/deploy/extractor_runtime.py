"""Runs an exported extractor graph with onnxruntime and NumPy only.

``image`` (C, H, W) float32 in [0, 1] -> ``keypoints`` (K, 2), ``keypoint_scores``
(K,), ``descriptors`` (K, D) as NumPy arrays, sorted by decreasing score. The channel
conversion the graph expects (``color`` in the manifest) is done here; the detection
threshold is the graph's ``threshold`` input and a smaller ``max_num_keypoints`` than
the exported one keeps the first (best) keypoints, so that both can change without a
new export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..models.utils.keypoints.config import resolve_threshold
from ..utils.errors import ConfigError, InputError
from ..utils.image import RGB_TO_GREY

#: extractor keys the runner may change; every other key is fixed by the graph
RUNTIME_KEYS = ("max_num_keypoints", "detection_threshold", "weights", "trainable")
_LUMA = np.asarray(RGB_TO_GREY, np.float32)[:, None, None]


class ExtractorRuntime:
    """The extractor of an export folder (``manifest["extractor"]`` describes it)."""

    def __init__(self, folder: Path, spec: dict, session, overrides: dict):
        self.spec = spec
        conf = spec["conf"]
        for key, value in overrides.items():
            if key not in RUNTIME_KEYS and value != conf.get(key):
                raise ConfigError(
                    f"deploy.onnx: extractor.{key}={value!r} differs from the export "
                    f"({conf.get(key)!r}): the graph fixes it; export again to change it."
                )
        exported = spec["max_num_keypoints"]
        n = overrides.get("max_num_keypoints", exported)
        n = exported if n is None or n <= 0 else int(n)
        if n > exported:
            raise ConfigError(
                f"deploy.onnx: extractor.max_num_keypoints={n} is above the exported "
                f"top-k ({exported}); export again with more keypoints."
            )
        self.max_num = n
        th = resolve_threshold(
            overrides.get("detection_threshold", conf.get("detection_threshold")),
            logits=spec["threshold_on_logits"],
        )
        self.threshold = np.array(-np.inf if th is None else th, np.float32)
        self.session = session(folder / "extractor.onnx")

    def _convert(self, image: np.ndarray) -> np.ndarray:
        color = self.spec["color"]
        if color == "rgb":
            return np.repeat(image, 3, 0) if image.shape[0] == 1 else image
        if image.shape[0] == 1:
            return image
        if color == "mean":
            return image.mean(0, keepdims=True, dtype=np.float32)
        return (image * _LUMA).sum(0, keepdims=True, dtype=np.float32)

    def __call__(self, image: np.ndarray) -> dict:
        """Features of one image (C, H, W) float32 in [0, 1]."""
        h, w = image.shape[-2:]
        least = self.spec["min_image_size"]
        if min(h, w) < least:
            raise InputError(
                f"deploy.onnx: image of {h}x{w} px; the exported "
                f"{self.spec['class']} needs at least {least} px per side."
            )
        x = np.ascontiguousarray(self._convert(image)[None], dtype=np.float32)
        kpts, scores, desc = self.session.run(
            None, {"image": x, "threshold": self.threshold}
        )
        n = self.max_num
        return {
            "keypoints": kpts[0, :n],
            "keypoint_scores": scores[0, :n],
            "descriptors": desc[0, :n],
        }
