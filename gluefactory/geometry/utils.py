"""Small helpers shared by the geometry modules."""

from __future__ import annotations

import torch


def to_homogeneous(points: torch.Tensor) -> torch.Tensor:
    """(..., N, D) -> (..., N, D + 1) by appending ones."""
    return torch.cat([points, torch.ones_like(points[..., :1])], -1)


def from_homogeneous(points: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """(..., N, D + 1) -> (..., N, D) by dividing by the last coordinate (+ ``eps``)."""
    return points[..., :-1] / (points[..., -1:] + eps)


def batched_eye(
    n: int, batch_shape=(), dtype=torch.float32, device=None
) -> torch.Tensor:
    """Identity matrices (*batch_shape, n, n)."""
    return torch.eye(n, dtype=dtype, device=device).expand(*batch_shape, n, n).clone()
