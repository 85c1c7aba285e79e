"""Helpers of the deploy tests (importable as ``deploy_helpers``)."""

from __future__ import annotations

import torch


def small_pipeline(**matcher) -> dict:
    """Model config: cached features -> a 3-layer LightGlue (random weights)."""
    return {
        "name": "two_view_pipeline",
        "matcher": {
            "name": "matchers.lightglue",
            "input_dim": 16,
            "descriptor_dim": 32,
            "n_layers": 3,
            "num_heads": 2,
            **matcher,
        },
    }


def random_views(m: int, n: int, seed: int = 0, dim: int = 16) -> dict:
    """A pair of cached feature sets: image 1 sees a shifted copy of half of image 0."""
    g = torch.Generator().manual_seed(seed)
    k0 = torch.rand(1, m, 2, generator=g) * torch.tensor([160.0, 120.0])
    d0 = torch.randn(1, m, dim, generator=g)
    k1 = torch.rand(1, n, 2, generator=g) * torch.tensor([160.0, 120.0])
    d1 = torch.randn(1, n, dim, generator=g)
    c = min(m, n) // 2
    k1[:, :c], d1[:, :c] = k0[:, :c] + 3.0, d0[:, :c] + 0.1 * d0[:, :c]
    size = torch.tensor([[160.0, 120.0]])
    return {
        "view0": {"image_size": size, "cache": {"keypoints": k0, "descriptors": d0}},
        "view1": {"image_size": size, "cache": {"keypoints": k1, "descriptors": d1}},
    }
