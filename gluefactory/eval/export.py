"""What a benchmark stores per pair, and one extraction per distinct image.

* :func:`to_export` / :func:`from_export`: the arrays of ``predictions.h5``, keypoints
  (and lines) divided by the view's ``scales`` at export (original-image pixels) and
  multiplied by the evaluation loader's ``scales`` when read back.
* :func:`memoized_extractor`: while exporting, the extractor's output for an image seen
  recently (same pixels, by content hash) is reused, so that an image shared by several
  pairs (HPatches: image 1 of every sequence is in five pairs) is extracted once.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..utils.errors import ConfigError

#: arrays stored per pair (those the model outputs), points then lines; a line key is
#: stored when the model outputs it (``orig_lines``: the detector's segments before the
#: wireframe joins their endpoints, what the point+line estimator fits)
POINT_EXPORT_KEYS = (
    "keypoints0",
    "keypoints1",
    "keypoint_scores0",
    "keypoint_scores1",
    "keypoint_mask0",
    "keypoint_mask1",
    "matches0",
    "matches1",
    "matching_scores0",
    "matching_scores1",
)
LINE_EXPORT_KEYS = (
    "lines0",
    "lines1",
    "orig_lines0",
    "orig_lines1",
    "line_mask0",
    "line_mask1",
    "line_matches0",
    "line_matches1",
    "line_matching_scores0",
    "line_matching_scores1",
)
EXPORT_KEYS = POINT_EXPORT_KEYS + LINE_EXPORT_KEYS
REQUIRED_EXPORT_KEYS = ("keypoints0", "keypoints1", "matches0")
#: keys (without the view suffix) in pixels: divided by the view's ``scales`` at export
POINT_KEYS = ("keypoints", "lines", "orig_lines")


# --------------------------------------------------------------------------------------
# One extraction per distinct image


class _ImageMemo(nn.Module):
    """Wraps an extractor; returns the stored output for an image seen recently."""

    def __init__(self, extractor: nn.Module, size: int = 8):
        super().__init__()
        self.inner = extractor
        self.conf = getattr(extractor, "conf", None)
        self.size = size
        self.memo: OrderedDict[bytes, dict] = OrderedDict()
        self.calls = 0
        self.hits = 0

    @staticmethod
    def key(view: Mapping[str, Any]) -> bytes:
        image = view["image"].detach().contiguous().cpu()
        h = hashlib.blake2b(digest_size=16)
        h.update(str((tuple(image.shape), str(image.dtype))).encode())
        h.update(image.numpy().tobytes())
        if "image_size" in view:
            h.update(view["image_size"].detach().cpu().numpy().tobytes())
        return h.digest()

    def forward(self, view: Mapping[str, Any]) -> dict:
        self.calls += 1
        k = self.key(view)
        if k in self.memo:
            self.hits += 1
            self.memo.move_to_end(k)
            return dict(self.memo[k])
        out = self.inner(view)
        self.memo[k] = out
        if len(self.memo) > self.size:
            self.memo.popitem(last=False)
        return dict(out)


@contextlib.contextmanager
def memoized_extractor(model: nn.Module) -> Iterator[_ImageMemo | None]:
    """Temporarily memoise ``model.extractor`` (extractors are deterministic in eval)."""
    inner = getattr(model, "extractor", None)
    if not isinstance(inner, nn.Module):
        yield None
        return
    memo = _ImageMemo(inner)
    model.extractor = memo
    try:
        yield memo
    finally:
        model.extractor = inner


def to_export(data: dict, pred: dict) -> dict[str, torch.Tensor]:
    """The exported arrays of one pair, batch removed, keypoints in original pixels."""
    missing = [k for k in REQUIRED_EXPORT_KEYS if k not in pred]
    if missing:
        raise ConfigError(
            f"The model outputs no {', '.join(missing)}: a benchmark needs an "
            "extractor and a matcher (model.extractor / model.matcher)."
        )
    out = {}
    for k in EXPORT_KEYS:
        if k not in pred or not isinstance(pred[k], torch.Tensor):
            continue
        v = pred[k][0]
        if k.rstrip("01") in POINT_KEYS:
            scales = data[f"view{k[-1]}"]["scales"][0].to(v)
            v = v / scales  # x_original = x_resized / scale
        out[k] = v.float() if v.is_floating_point() else v
    return out


def from_export(data: dict, pred: dict) -> dict[str, torch.Tensor]:
    """Predictions of one pair in the evaluation loader's pixels."""
    pred = dict(pred)
    for k in list(pred):
        if k.rstrip("01") in POINT_KEYS:
            scales = data[f"view{k[-1]}"]["scales"][0].to(pred[k])
            pred[k] = pred[k] * scales
    return pred
