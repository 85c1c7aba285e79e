"""Comparing dataset items: a sizes-only item (``read_image: false``) against a full one."""

from __future__ import annotations

from typing import Any

import torch


def assert_same_but_images(full: Any, sizes: Any, where: str = "item") -> None:
    """``sizes`` is ``full`` without its ``image`` entries: every other key, value, dtype
    and shape equal (tensors, cameras and poses exactly)."""
    if isinstance(full, dict):
        expected = {k for k in full if k != "image"}
        assert set(sizes) == expected, f"{where}: keys {sorted(set(sizes) ^ expected)}"
        for k in expected:
            assert_same_but_images(full[k], sizes[k], f"{where}.{k}")
    elif isinstance(full, torch.Tensor):
        assert full.dtype == sizes.dtype and full.shape == sizes.shape, where
        assert torch.equal(full, sizes), where
    elif hasattr(full, "_data"):  # Camera, Pose
        assert torch.equal(full._data, sizes._data), where
    else:
        assert full == sizes, where
