"""Textured 640 x 480 photographs (scikit-image's bundled data) for the line models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


def photo(name: str, size: tuple[int, int] = (480, 640)) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: skimage.data.<name>() resized (area) to ``size``."""
    skd = pytest.importorskip("skimage.data")
    img = torch.from_numpy(getattr(skd, name)())
    img = img[..., None].expand(-1, -1, 3) if img.dim() == 2 else img[..., :3]
    img = img.permute(2, 0, 1)[None].float() / 255
    return F.interpolate(img, size, mode="area").clamp(0, 1)


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """Four textured 640 x 480 photographs, (4, 3, 480, 640)."""
    return torch.cat([photo(n) for n in ("astronaut", "coffee", "chelsea", "rocket")])
