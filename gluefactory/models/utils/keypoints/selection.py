"""Keypoint selection on score maps: non-maximum suppression, borders, top-k.

Score maps are (B, H, W); a keypoint detected at pixel index (i, j) of a
full-resolution map is returned at (i + 0.5, j + 0.5), the library convention of
:mod:`gluefactory.geometry.coordinates`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ....geometry.coordinates import CENTER_OFFSET


def _check_map(scores: torch.Tensor, name: str = "scores") -> None:
    if scores.dim() != 3:
        raise ValueError(f"{name} must be (B, H, W), got shape {tuple(scores.shape)}.")


def _max_pool(x: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, H, W) -> max over each (2r+1)^2 window (clipped at the borders)."""
    return F.max_pool2d(x[:, None], 2 * radius + 1, stride=1, padding=radius)[:, 0]


def simple_nms_mask(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean (B, H, W) mask of the points kept by :func:`simple_nms`."""
    _check_map(scores)
    if radius < 0:
        raise ValueError(f"nms radius must be >= 0, got {radius}.")
    if radius == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    max_mask = scores == _max_pool(scores, radius)
    # Two rounds: positions that become the maximum of their window once the windows
    # around the maxima found so far are suppressed are kept too (SuperPoint's NMS).
    for _ in range(2):
        supp_mask = _max_pool(max_mask.to(scores.dtype), radius) > 0
        supp_scores = scores.masked_fill(supp_mask, 0)
        new_max_mask = supp_scores == _max_pool(supp_scores, radius)
        max_mask = max_mask | (new_max_mask & ~supp_mask)
    return max_mask


def simple_nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Max-pool based non-maximum suppression of a (B, H, W) score map (SuperPoint's).

    Returns the scores with every non-maximum set to 0. A point is a maximum when it
    equals the maximum of its (2 radius + 1)^2 window (ties are all kept); two further
    rounds add the points that are maxima once the neighbourhoods of the maxima already
    found are suppressed. ``radius == 0`` keeps every point.
    """
    return scores * simple_nms_mask(scores, radius).to(scores.dtype)


def strict_local_maxima(scores: torch.Tensor, window: int) -> torch.Tensor:
    """Mask (B, H, W) of the strict maxima of each ``window x window`` neighbourhood.

    A point is kept only when it is strictly greater than every other point of its
    window (so tied maxima are all dropped), and only where the whole window lies inside
    the map: the first and last ``window // 2`` rows and columns are never maxima. This
    is the NMS of kornia's ALIKED and DISK. ``window`` must be odd.
    """
    _check_map(scores)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"NMS window must be a positive odd integer, got {window}.")
    r = window // 2
    if r == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    b, h, w = scores.shape
    x = F.pad(scores[:, None], (r, r, r, r), value=float("-inf"))  # (B,1,H+2r,W+2r)
    # Max over the window without its centre: rows above, rows below (full width),
    # then the centre row left and right of the centre.
    row_max = F.max_pool2d(x, (1, window), stride=1)  # (B,1,H+2r,W)
    above = F.max_pool2d(row_max[:, :, : h + r - 1], (r, 1), stride=1)
    below = F.max_pool2d(row_max[:, :, r + 1 :], (r, 1), stride=1)
    centre_row = x[:, :, r : h + r]
    left = F.max_pool2d(centre_row[..., : w + r - 1], (1, r), stride=1)
    right = F.max_pool2d(centre_row[..., r + 1 :], (1, r), stride=1)
    others = torch.maximum(torch.maximum(above, below), torch.maximum(left, right))
    mask = (scores[:, None] > others)[:, 0]
    return remove_borders(mask, r, fill=False)


def remove_borders(
    scores: torch.Tensor,
    border: int,
    image_size: torch.Tensor | None = None,
    fill: float | bool = 0,
) -> torch.Tensor:
    """Set the ``border`` outermost rows and columns of a (B, H, W) map to ``fill``.

    ``image_size`` (B, 2) gives the valid (w, h) of each image when the maps are padded
    at the bottom/right to a common size; the border is then measured from those.
    Keeps exactly the pixels (i, j) with border <= i < w - border and
    border <= j < h - border. Returns a new tensor.
    """
    _check_map(scores)
    border = max(int(border), 0)
    if border == 0 and image_size is None:
        return scores.clone()
    b, h, w = scores.shape
    jj = torch.arange(h, device=scores.device)[None, :, None]
    ii = torch.arange(w, device=scores.device)[None, None, :]
    if image_size is None:
        wv = torch.full((b, 1, 1), w, device=scores.device)
        hv = torch.full((b, 1, 1), h, device=scores.device)
    else:
        size = torch.as_tensor(image_size, device=scores.device).reshape(-1, 2).long()
        wv, hv = size[:, 0, None, None], size[:, 1, None, None]
    keep = (ii >= border) & (ii < wv - border) & (jj >= border) & (jj < hv - border)
    if scores.dtype == torch.bool:  # logical ops: they also trace into ONNX graphs
        return scores | ~keep if fill else scores & keep
    return scores.masked_fill(~keep, fill)


_remove_borders = remove_borders


def top_k_keypoints(
    kpts: torch.Tensor, scores: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` highest-scoring keypoints (N, 2), sorted by decreasing score.

    With ``k <= 0`` or ``k >= N`` the inputs are returned unchanged.
    """
    if k is None or k <= 0 or k >= len(kpts):
        return kpts, scores
    scores, idx = torch.topk(scores, k, dim=0)
    return kpts[idx], scores


def select_keypoints(
    score_map: torch.Tensor,
    nms_radius: int,
    threshold: float | None,
    max_num: int | None,
    remove_borders: int = 0,
    image_size: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Detect keypoints in a (B, H, W) full-resolution score map (SuperPoint-style).

    Steps: :func:`simple_nms` with ``nms_radius`` (0: none); drop the ``remove_borders``
    outermost pixels; keep the NMS survivors scoring strictly above ``threshold`` (a
    ``threshold`` of None, 0 or below keeps all survivors: top-k regardless of score);
    keep the ``max_num`` best (``None`` or <= 0: all). Returns per image keypoints
    (N, 2) in the library convention (pixel index + 0.5) and scores (N,), in raster
    order, or by decreasing score when ``max_num`` cut them.
    """
    _check_map(score_map, "score_map")
    mask = simple_nms_mask(score_map, nms_radius) if nms_radius > 0 else None
    if mask is None:
        mask = torch.ones_like(score_map, dtype=torch.bool)
    if (remove_borders and remove_borders > 0) or image_size is not None:
        mask = _remove_borders(mask, remove_borders or 0, image_size, fill=False)
    if threshold is not None and threshold > 0:
        mask = mask & (score_map > threshold)
    kpts, scores = [], []
    for b in range(score_map.shape[0]):
        yx = torch.nonzero(mask[b])
        s = score_map[b][mask[b]]
        xy = yx.flip(-1).to(score_map.dtype) + CENTER_OFFSET
        xy, s = top_k_keypoints(xy, s, max_num if max_num is not None else -1)
        kpts.append(xy)
        scores.append(s)
    return kpts, scores


def border_mask(
    kpts: torch.Tensor, border: int, size: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """(N,) bool: keypoints (N, 2) whose pixel lies at least ``border`` pixels inside a
    (w, h) image: border <= floor(x) < w - border, and likewise for y.

    For keypoints at pixel centres this keeps exactly the pixels that
    :func:`remove_borders` keeps; with ``border`` 0 it keeps the points inside the
    image (those of an image padded to a larger batch size are dropped).
    """
    size = torch.as_tensor(size, device=kpts.device).to(kpts.dtype).reshape(2)
    pix = kpts.floor()
    return ((pix >= border) & (pix < size - border)).all(-1)
