"""Channel conversion of extractor inputs (B, 1 or 3, H, W).

The RGB-to-grey conversion itself is :func:`gluefactory.utils.image.rgb_to_grayscale`,
the only one in the library; these wrappers add the shape check with the model's name.
"""

from __future__ import annotations

import torch

from ....utils.image import RGB_TO_GREY, check_image_tensor, rgb_to_grayscale

__all__ = ["RGB_TO_GREY", "check_image", "to_grey", "to_rgb"]


def check_image(image: torch.Tensor, component: str) -> None:
    """Raise an InputError naming ``component`` unless image is (B, 1 or 3, H, W).

    Shape only; :func:`~gluefactory.utils.image.check_image_tensor` also checks the
    type and the values (what :class:`~gluefactory.models.extractors.base.BaseExtractor`
    applies to every input).
    """
    ok = isinstance(image, torch.Tensor) and image.dim() == 4
    if not ok or image.shape[1] not in (1, 3):
        check_image_tensor(image, component)  # raises, with the expected shape


def to_rgb(image: torch.Tensor, component: str) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 3, H, W); grey is repeated (a view, no copy)."""
    check_image(image, component)
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def to_grey(image: torch.Tensor, component: str) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 1, H, W) with ITU-R 601 luma weights."""
    check_image(image, component)
    return rgb_to_grayscale(image)
