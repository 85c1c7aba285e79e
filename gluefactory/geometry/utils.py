"""Small helpers shared by the geometry modules."""

from __future__ import annotations

import torch


def to_homogeneous(points: torch.Tensor) -> torch.Tensor:
    """(..., N, D) -> (..., N, D + 1) by appending ones."""
    return torch.cat([points, torch.ones_like(points[..., :1])], -1)
