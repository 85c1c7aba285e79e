"""Keypoint utilities shared by the extractors: NMS, selection, padding, sampling, and
the common extractor interface (configuration checks, threshold semantics, the batched
output with ``force_num_keypoints`` / ``keypoint_valid``: :func:`batch_features`).

All keypoints are (x, y) in the library convention of
:mod:`gluefactory.geometry.coordinates`: the centre of pixel (i, j) is
(i + 0.5, j + 0.5). Score maps are (B, H, W); a keypoint detected at pixel index (i, j)
of a full-resolution score map is therefore returned at (i + 0.5, j + 0.5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from numbers import Real

import torch
import torch.nn.functional as F

from ...geometry.coordinates import CENTER_OFFSET, normalize_for_grid_sample
from ...utils.conf import ConfigError


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


def random_keypoints(
    n: int,
    image_size: Sequence[float] | torch.Tensor,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(n, 2) keypoints uniform between the first and last pixel centres of a (w, h)
    image.

    Sampled on the CPU (with ``generator`` if given, hence reproducible), then moved.
    """
    w, h = (float(v) for v in torch.as_tensor(image_size, dtype=torch.float64).tolist())
    u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
    span = torch.tensor([max(w - 1.0, 0.0), max(h - 1.0, 0.0)], dtype=torch.float64)
    return (u * span + CENTER_OFFSET).to(device=device, dtype=dtype)


def pad_keypoints(
    kpts: torch.Tensor,
    scores: torch.Tensor,
    n: int,
    image_size: Sequence[float] | torch.Tensor,
    generator: torch.Generator | None = None,
    return_indices: bool = False,
):
    """Force exactly ``n`` keypoints: truncate to the top ``n`` or pad with random ones.

    kpts (N, 2), scores (N,). With N > n the ``n`` best are kept (by decreasing score).
    With N < n, ``n - N`` keypoints uniform inside the (w, h) image (between its first
    and last pixel centres) are appended with score 0. Returns (kpts (n, 2),
    scores (n,), valid (n,) bool: False for padded entries) and, with
    ``return_indices``, the index (n,) of each output in the input (-1 for padded
    entries) so that other per-keypoint fields can be gathered. Deterministic when
    given a ``torch.Generator``.
    """
    if kpts.dim() != 2 or kpts.shape[-1] != 2 or scores.shape != kpts.shape[:1]:
        raise ValueError(
            f"pad_keypoints expects kpts (N, 2) and scores (N,), got "
            f"{tuple(kpts.shape)} and {tuple(scores.shape)}."
        )
    if n < 0:
        raise ValueError(f"Number of keypoints to force must be >= 0, got {n}.")
    num = len(kpts)
    if num > n:
        scores, idx = torch.topk(scores, n, dim=0)
        kpts = kpts[idx]
        valid = torch.ones(n, dtype=torch.bool, device=kpts.device)
    elif num == n:  # unchanged (order kept)
        idx = torch.arange(n, device=kpts.device)
        valid = torch.ones(n, dtype=torch.bool, device=kpts.device)
    else:
        extra = random_keypoints(
            n - num, image_size, generator, kpts.device, kpts.dtype
        )
        kpts = torch.cat([kpts, extra], 0)
        scores = torch.cat([scores, scores.new_zeros(n - num)], 0)
        valid = torch.arange(n, device=kpts.device) < num
        idx = torch.arange(n, device=kpts.device).masked_fill(~valid, -1)
    if return_indices:
        return kpts, scores, valid, idx
    return kpts, scores, valid


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


def stack_features(features: Sequence[dict], pad: bool = False) -> dict:
    """Stack per-image dicts of tensors (N, ...) into batched (B, N, ...) tensors.

    Without ``pad`` every image must have the same number of keypoints (use
    ``force_num_keypoints``); otherwise a ValueError names the key and the shapes.
    With ``pad`` (inference on images with different keypoint counts), the
    per-keypoint fields (tensors whose first dimension is the image's number of
    keypoints, for every image) are zero-padded to the largest count and a
    ``keypoint_mask`` (B, N) bool (True = real keypoint) is added: pass it to a matcher
    as ``keypoint_mask0/1``. Non-tensor values are gathered into lists.
    """
    if len(features) == 0:
        raise ValueError("stack_features got no features.")
    keys = list(features[0].keys())
    for i, f in enumerate(features):
        if list(f.keys()) != keys:
            raise ValueError(
                f"stack_features: image {i} has keys {sorted(f)}, "
                f"image 0 has {sorted(keys)}."
            )
    if pad:
        features = _pad_to_common_count(features)
        keys = list(features[0].keys())
    out = {}
    for k in keys:
        vals = [f[k] for f in features]
        if all(isinstance(v, torch.Tensor) for v in vals):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(
                    f"Cannot batch '{k}': per-image shapes differ {sorted(shapes)}. "
                    "Set force_num_keypoints (with max_num_keypoints) to get a fixed "
                    "number of keypoints per image, pad them (stack_features(..., "
                    "pad=True), then pass keypoint_mask to the matcher), or extract "
                    "images one at a time."
                )
            # one image: a view is enough (torch.stack copies)
            out[k] = vals[0][None] if len(vals) == 1 else torch.stack(vals, 0)
        else:
            out[k] = vals
    return out


def _pad_to_common_count(features: Sequence[dict]) -> list[dict]:
    """Zero-pad the per-keypoint fields of every image to the largest keypoint count
    and add ``keypoint_mask`` (see :func:`stack_features`)."""
    if any("keypoints" not in f for f in features):
        raise ValueError("stack_features(pad=True) needs 'keypoints' in every image.")
    counts = [len(f["keypoints"]) for f in features]
    n = max(counts)
    per_kpt = [
        k
        for k, v in features[0].items()
        if all(
            isinstance(f[k], torch.Tensor) and f[k].dim() > 0 and len(f[k]) == c
            for f, c in zip(features, counts, strict=True)
        )
    ]
    out = []
    for f, c in zip(features, counts, strict=True):
        g = dict(f)
        for k in per_kpt:
            v = f[k]
            g[k] = torch.cat([v, v.new_zeros((n - c, *v.shape[1:]))], 0)
        g["keypoint_mask"] = torch.arange(n, device=f["keypoints"].device) < c
        out.append(g)
    return out


# ----------------------------------------------------------------- common extractor API

RGB_TO_GREY = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as cv2.cvtColor


def check_image(image: torch.Tensor, component: str) -> None:
    """Raise a ValueError naming ``component`` unless image is (B, 1 or 3, H, W)."""
    ok = isinstance(image, torch.Tensor) and image.dim() == 4
    if not ok or image.shape[1] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image)
        raise ValueError(
            f"{component}: data['image'] must be (B, 1 or 3, H, W), got {shape}."
        )


def to_rgb(image: torch.Tensor, component: str) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 3, H, W); grey is repeated (a view, no copy)."""
    check_image(image, component)
    return image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image


def to_grey(image: torch.Tensor, component: str) -> torch.Tensor:
    """(B, 1 or 3, H, W) -> (B, 1, H, W) with ITU-R 601 luma weights."""
    check_image(image, component)
    if image.shape[1] == 3:
        w = image.new_tensor(RGB_TO_GREY).view(1, 3, 1, 1)
        image = (image * w).sum(1, keepdim=True)
    return image


def check_extractor_conf(
    conf, component: str, min_nms_radius: int = 0, nms_optional: bool = False
) -> int:
    """Validate the keys every extractor shares; return ``max_num_keypoints`` as an
    int, -1 meaning no limit (``None`` and values <= 0).

    Raises :class:`ConfigError` naming the component and the key for: a non-integer
    ``max_num_keypoints``, a non-numeric ``detection_threshold`` (``None`` is allowed:
    no threshold), ``nms_radius`` below ``min_nms_radius`` (``None`` only with
    ``nms_optional``), a negative or non-integer ``remove_borders``, and
    ``force_num_keypoints`` without ``max_num_keypoints > 0``.
    """

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    n = conf.max_num_keypoints
    if n is not None and not is_int(n):
        raise ConfigError(
            f"{component}: max_num_keypoints must be an integer or null (no limit), "
            f"got {n!r}."
        )
    th = conf.detection_threshold
    if th is not None and (not isinstance(th, Real) or isinstance(th, bool)):
        raise ConfigError(
            f"{component}: detection_threshold must be a number or null (no "
            f"threshold), got {th!r}."
        )
    r = conf.nms_radius
    if r is None and not nms_optional:
        raise ConfigError(f"{component}: nms_radius must be an integer, got None.")
    if r is not None and (not is_int(r) or r < min_nms_radius):
        raise ConfigError(
            f"{component}: nms_radius must be an integer >= {min_nms_radius}"
            f"{' or null' if nms_optional else ''}, got {r!r}."
        )
    b = conf.remove_borders
    if not is_int(b) or b < 0:
        raise ConfigError(
            f"{component}: remove_borders must be an integer >= 0, got {b!r}."
        )
    n = -1 if n is None or n <= 0 else n
    if conf.force_num_keypoints and n <= 0:
        raise ConfigError(
            f"{component}: force_num_keypoints needs max_num_keypoints > 0, got "
            f"{conf.max_num_keypoints}."
        )
    return n


def resolve_threshold(value: float | None, logits: bool = False) -> float | None:
    """The detection threshold to apply, or None for none (top-k regardless of score).

    ``None`` and negative values (the configs' -1) mean no threshold. On scores that
    are never negative (probabilities) 0 means none too; on ``logits`` (DISK) 0 is a
    real threshold (probability 0.5).
    """
    if value is None or value < 0 or (value == 0 and not logits):
        return None
    return float(value)


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


def _gather(value: torch.Tensor, idx: torch.Tensor, fill: float) -> torch.Tensor:
    """value[idx] with ``fill`` where idx == -1 (padded entries)."""
    pad = idx < 0
    if len(value) == 0:
        out = value.new_zeros((len(idx), *value.shape[1:]))
    else:
        out = value[idx.clamp(min=0)]
    return out.masked_fill(pad.view(-1, *[1] * (out.dim() - 1)), fill)


def batch_features(
    keypoints: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    image_hw: tuple[int, int],
    max_num_keypoints: int | None = None,
    force: bool = False,
    image_size: torch.Tensor | None = None,
    seed: int | None = None,
    describe: Callable[[int, torch.Tensor], dict] | None = None,
    fields: Sequence[Mapping[str, torch.Tensor]] | None = None,
    fill: Mapping[str, float] | None = None,
) -> dict:
    """Per-image keypoints -> the batched output every extractor returns.

    For each image b: ``keypoints[b]`` (N_b, 2) (library convention) and
    ``scores[b]`` (N_b,) are cut to the ``max_num_keypoints`` best (None or <= 0: no
    limit; unchanged, order included, when there are not more); with ``force`` they
    are made exactly ``max_num_keypoints`` by :func:`pad_keypoints` (random in-image
    points of score 0, inside ``image_size[b]`` or the (H, W) ``image_hw``), with a
    ``torch.Generator`` seeded anew with ``seed`` for every image (None: torch's
    global generator). ``fields[b]`` holds per-keypoint tensors (N_b, ...) computed
    with the keypoints (SIFT's scales, ...): they follow the selection, padded
    entries get ``fill[key]`` (default 0). Then ``describe(b, kpts)`` returns the
    per-keypoint outputs computed at the final keypoints, padded ones included
    (descriptors sampled where they lie). Returns ``keypoints`` (B, N, 2),
    ``keypoint_scores`` (B, N), the described and gathered fields, and with ``force``
    ``keypoint_valid`` (B, N) bool (False for padded entries); a ValueError asks for
    ``force_num_keypoints`` when counts differ.
    """
    n = -1 if max_num_keypoints is None else int(max_num_keypoints)
    if force and n <= 0:
        raise ValueError(f"force needs max_num_keypoints > 0, got {max_num_keypoints}.")
    h, w = image_hw
    fill = fill or {}
    preds = []
    for b, (kpts, sc) in enumerate(zip(keypoints, scores, strict=True)):
        idx, valid = None, None
        if force:
            size = (w, h) if image_size is None else image_size[b]
            gen = None if seed is None else torch.Generator().manual_seed(seed)
            kpts, sc, valid, idx = pad_keypoints(kpts, sc, n, size, gen, True)
        elif 0 < n < len(kpts):
            sc, idx = torch.topk(sc, n, dim=0)
            kpts = kpts[idx]
        pred = {"keypoints": kpts, "keypoint_scores": sc}
        if describe is not None:
            pred.update(describe(b, kpts))
        for key, value in (fields[b] if fields is not None else {}).items():
            pred[key] = value if idx is None else _gather(value, idx, fill.get(key, 0))
        if valid is not None:
            pred["keypoint_valid"] = valid
        preds.append(pred)
    return stack_features(preds)
