"""The one keypoint coordinate convention of the library, and conversions.

**Convention (as in COLMAP): the pixel with column index i and row index j covers the
square [i, i+1) x [j, j+1); its centre is (i + 0.5, j + 0.5).** The top-left corner of the
image is (0, 0) and the bottom-right corner is (W, H). Keypoints are (x, y) = (column,
row) in that frame, in pixels of the image they were detected on.

Why: resizing by a factor s maps x to s * x exactly (no +-0.5 fix-ups), image corners
are (0, 0) and (W, H) (as the homography corner error expects), and
``torch.nn.functional.grid_sample(..., align_corners=False)`` samples at 2 x / W - 1.

Many reference implementations (OpenCV, kornia, LightGlue's repository) use the *centre*
convention instead, where the centre of pixel (i, j) is (i, j): convert with
:func:`from_center_convention` and :func:`to_center_convention`.
"""

from __future__ import annotations

import torch

#: offset between the centre convention (pixel centre at integers) and ours
CENTER_OFFSET = 0.5


def from_center_convention(kpts: torch.Tensor) -> torch.Tensor:
    """Keypoints whose pixel centres are at integers -> library convention (+0.5)."""
    return kpts + CENTER_OFFSET


def to_center_convention(kpts: torch.Tensor) -> torch.Tensor:
    """Library convention -> pixel centres at integers (OpenCV, kornia) (-0.5)."""
    return kpts - CENTER_OFFSET


def pixel_centers(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) coordinates (x, y) of all pixel centres: (i + 0.5, j + 0.5)."""
    y, x = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype),
        torch.arange(w, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([x, y], -1) + CENTER_OFFSET


def pixel_index(kpts: torch.Tensor) -> torch.Tensor:
    """Integer (column, row) index of the pixel that contains each keypoint."""
    return torch.floor(kpts).long()


def normalize_for_grid_sample(kpts: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Keypoints (..., 2) -> [-1, 1] for ``grid_sample(align_corners=False)``.

    ``size`` is (w, h) of the image or feature map the keypoints refer to, broadcastable.
    """
    return kpts / size.to(kpts) * 2 - 1


def scale_keypoints(kpts: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Map keypoints between an image and its resized copy: x' = s * x (per axis)."""
    return kpts * scales.to(kpts)


def image_corners(w: float, h: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """(4, 2) corners (0,0), (W,0), (W,H), (0,H) of a W x H image."""
    return torch.tensor([[0, 0], [w, 0], [w, h], [0, h]], device=device, dtype=dtype)


def in_image(
    kpts: torch.Tensor, size: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Mask of keypoints (..., N, 2) inside [margin, W - margin) x [margin, H - margin).

    ``size`` is (w, h), either (2,) or batched (..., 2).
    """
    size = size.to(kpts)
    if size.dim() > 1:
        size = size.unsqueeze(-2)
    return ((kpts >= margin) & (kpts < size - margin)).all(-1)
