"""Fixed-size and batched keypoint sets: ``force_num_keypoints`` padding, the batched
output of every extractor (:func:`batch_features`, with ``keypoint_mask``) and
stacking per-image outputs (:func:`stack_features`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from ....geometry.coordinates import CENTER_OFFSET


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
    ``keypoint_mask`` (B, N) bool (True = real keypoint, False = padded entry); a
    ValueError asks for ``force_num_keypoints`` when counts differ.
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
            pred["keypoint_mask"] = valid
        preds.append(pred)
    return stack_features(preds)
