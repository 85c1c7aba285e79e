"""Sampling dense descriptor maps at keypoints (library pixel convention)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ....geometry.coordinates import normalize_for_grid_sample


def sample_descriptors(
    desc_map: torch.Tensor,
    kpts: torch.Tensor,
    image_size: Sequence[float] | torch.Tensor | None = None,
    stride: float | None = None,
    normalize: bool = True,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Interpolate a dense map (B, C, h, w) at keypoints (B, N, 2) -> (B, N, C).

    Keypoints are in image pixels (library convention). The map covers the image: pass
    the image ``image_size`` (w, h) (a pair or (B, 2)), or ``stride`` when the map is
    the image downsampled by that factor (image extent = stride * (w, h)). Sampling
    is ``grid_sample(align_corners=False)``; ``normalize`` L2-normalises the
    descriptors.
    """
    if desc_map.dim() != 4 or kpts.dim() != 3 or kpts.shape[-1] != 2:
        raise ValueError(
            f"sample_descriptors expects desc_map (B, C, h, w) and kpts (B, N, 2), got "
            f"{tuple(desc_map.shape)} and {tuple(kpts.shape)}."
        )
    b, c, h, w = desc_map.shape
    if (image_size is None) == (stride is None):
        raise ValueError(
            "sample_descriptors needs exactly one of image_size or stride."
        )
    if image_size is None:
        size = torch.tensor([w * stride, h * stride], device=kpts.device)
    else:
        size = torch.as_tensor(image_size, device=kpts.device)
    size = size.to(kpts.dtype).reshape(-1, 1, 2)
    grid = normalize_for_grid_sample(kpts, size)
    desc = F.grid_sample(
        desc_map, grid[:, None].to(desc_map.dtype), mode=mode, align_corners=False
    )[:, :, 0]  # (B, C, N)
    desc = desc.transpose(1, 2)
    if normalize:
        desc = F.normalize(desc, p=2, dim=-1)
    return desc
