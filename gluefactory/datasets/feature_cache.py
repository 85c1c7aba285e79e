"""Pre-extracted local features for training (the datasets' ``load_features`` section).

Written by ``python -m gluefactory.scripts.export_megadepth`` (one file per scene) and
``python -m gluefactory.scripts.export_local_features`` (one file for an image folder),
read and written through :mod:`gluefactory.formats.features`. File layout (HDF5)::

    attrs: export_hash (str), complete (True, set last; the file is written atomically)
    /<image name>/keypoints        (N, 2) float32, ORIGINAL-image pixels, (x, y), pixel
                                   centres at +0.5 (library convention)
    /<image name>/keypoint_scores  (N,)   float16
    /<image name>/descriptors      (N, D) float16
    /<image name>/scales, oris     (N,)   float16 (SIFT: scale in ORIGINAL pixels,
                                   rescaled by the mean of (sx, sy); radians)
    /<image name>/depth_keypoints  (N,)   float16, depth sampled at the keypoints in the
                                   original depth map (``--export_sparse_depth``)
    /<image name>/valid_depth_keypoints (N,) bool
    /<image name>/image_size       (2,)   float32, (w, h) of the original image

Keypoints are stored in original pixels (like the benchmarks' ``predictions.h5``) so that
any training resize can use them: they are multiplied by the item's ``scales``.
Keypoints stay float32 (float16 has a 1 px step above 2048 px); the rest is float16.
:func:`rotate_features` moves them into a view turned by +-90 degrees (MegaDepth's
``p_rotate``).

:class:`FeatureCache` reads one image's features; :func:`pad_features` gives them the
fixed length of a batch with the extractors' padding rule (contract 3): the best
``padding_length`` by score are kept, missing ones are random points inside the image
with score 0 and ``keypoint_mask`` False.
"""

from __future__ import annotations

import math
import os
import zlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .. import settings
from ..formats.features import FeatureReader
from ..geometry.coordinates import in_image
from ..geometry.homography import warp_points
from ..models.utils.keypoints import pad_keypoints
from ..utils.errors import ConfigError, DataError

#: the ``load_features`` section of a dataset (each dataset sets its own ``path``)
LOAD_FEATURES_CONF = {
    "do": False,
    "path": None,  # HDF5 file, relative to the data root unless absolute
    "padding_length": 2048,  # fixed number of keypoints per view (batching)
    "padding_fn": "pad_local_features",  # or null: no padding (variable counts)
    "data_keys": None,  # null: every stored array; or a list, e.g. [keypoints, descriptors]
    # point arrays rescaled from original to resized pixels (upstream's default list)
    "scale": ["keypoints", "lines", "orig_lines"],
    "numeric_type": "float32",  # float arrays as: float16 | float32 | float64 | null
}
NUMERIC_TYPES = {"float16": torch.float16, "float32": torch.float32,
                 "float64": torch.float64, None: None}  # fmt: skip
PADDING_FNS = ("pad_local_features", None)
#: the value of padded entries, per key (descriptors: random unit vectors, as upstream)
FILL = {
    "keypoint_scores": 0.0,
    "scales": 1.0,
    "oris": 0.0,
    "depth_keypoints": 0.0,
    "valid_depth_keypoints": False,
}
META_KEYS = ("image_size",)
#: per-keypoint sizes in pixels (SIFT's sigma), stored in original pixels too
SIZE_KEYS = ("scales",)
MAX_OPEN = 8


def check_load_features(conf, dataset: str) -> None:
    """Raise a ConfigError for an invalid ``load_features`` section (when ``do``)."""
    if not conf.do:
        return
    if not conf.path:
        raise ConfigError(f"{dataset}: load_features.path must be set (an HDF5 file).")
    if conf.numeric_type not in NUMERIC_TYPES:
        raise ConfigError(
            f"{dataset}: load_features.numeric_type must be float16, float32, float64 "
            f"or null, got {conf.numeric_type!r}."
        )
    if conf.padding_fn not in PADDING_FNS:
        raise ConfigError(
            f"{dataset}: load_features.padding_fn must be pad_local_features or null, "
            f"got {conf.padding_fn!r}."
        )
    if conf.padding_fn is not None and not (
        isinstance(conf.padding_length, int) and conf.padding_length > 0
    ):
        raise ConfigError(
            f"{dataset}: load_features.padding_length must be a positive integer, "
            f"got {conf.padding_length!r}."
        )


class FeatureCache:
    """Reads the cached features of one image from ``path`` (``{scene}`` formatted).

    Files stay open (a few per process, reopened after a fork) so that an item costs
    one HDF5 group read. ``hint`` (the export command) ends every missing-file error.
    """

    def __init__(self, conf, hint: str, dataset: str):
        self.conf, self.hint, self.dataset = conf, hint, dataset
        self._files: OrderedDict[Path, FeatureReader] = OrderedDict()
        self._pid = os.getpid()

    def path(self, scene: str | None = None) -> Path:
        text = str(self.conf.path)
        if "{scene}" in text:
            if scene is None:
                raise ConfigError(
                    f"{self.dataset}: load_features.path {text} has a {{scene}} field, "
                    "but this dataset has no scenes."
                )
            text = text.format(scene=scene)
        path = Path(text).expanduser()
        return path if path.is_absolute() else settings.data_root() / path

    def _open(self, path: Path) -> FeatureReader:
        if os.getpid() != self._pid:  # a DataLoader worker: do not share handles
            self._files, self._pid = OrderedDict(), os.getpid()
        if path in self._files:
            self._files.move_to_end(path)
            return self._files[path]
        if not path.is_file():
            raise DataError(
                f"{self.dataset}: cached features not found: {path} "
                f"(load_features.path={self.conf.path}). {self.hint}"
            )
        try:
            f = FeatureReader(path)
        except OSError as e:
            raise DataError(
                f"{self.dataset}: cannot read cached features {path}: {e}. Re-export "
                f"them ({self.hint.rstrip('.')} --overwrite)."
            ) from e
        if not f.complete:
            f.close()
            raise DataError(
                f"{self.dataset}: {path} is an incomplete export. Re-export it "
                f"({self.hint.rstrip('.')} --overwrite)."
            )
        self._files[path] = f
        if len(self._files) > MAX_OPEN:
            self._files.popitem(last=False)[1].close()
        return f

    def read(self, name: str, scene: str | None = None) -> dict[str, torch.Tensor]:
        """The stored arrays of image ``name`` (original pixels), floats cast to
        ``numeric_type``."""
        path = self.path(scene)
        f = self._open(path)
        if name not in f:
            raise DataError(
                f"{self.dataset}: {path} has no features for image {name!r}: it was "
                f"exported from other images. Re-export it "
                f"({self.hint.rstrip('.')} --overwrite)."
            )
        keys = f.keys(name)
        wanted = self.conf.data_keys
        if wanted is not None:
            missing = [k for k in wanted if k not in keys]
            if missing:
                raise DataError(
                    f"{self.dataset}: {path}/{name} has no {', '.join(missing)} "
                    f"(load_features.data_keys); it holds {', '.join(keys)}."
                )
            keys = [k for k in keys if k in wanted or k in META_KEYS]
        if "keypoints" not in keys:
            raise DataError(f"{self.dataset}: {path}/{name} has no keypoints.")
        dtype = NUMERIC_TYPES.get(self.conf.get("numeric_type", "float32"))
        try:
            out = f.read(name, keys)
        except OSError as e:
            raise DataError(f"{self.dataset}: corrupt {path}/{name}: {e}") from e
        if dtype is not None:
            out = {
                k: v.to(dtype) if v.is_floating_point() else v for k, v in out.items()
            }
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __getstate__(self) -> dict:  # picklable (spawned workers): handles not sent
        return {**self.__dict__, "_files": OrderedDict()}


def rescale(
    feats: Mapping[str, torch.Tensor], scales: torch.Tensor, keys: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Point arrays (original pixels) -> pixels of the resized image (x * (sx, sy))."""
    out = dict(feats)
    for k in keys:
        if k in out:
            out[k] = out[k] * scales.to(out[k])
    for k in SIZE_KEYS:  # a size in pixels: by the mean scale
        if k in out and out[k].is_floating_point():
            out[k] = out[k] * scales.to(out[k]).mean()
    return out


def rotate_features(
    feats: Mapping[str, torch.Tensor],
    rot: int,
    image_size: Sequence[float],
    keys: Sequence[str],
) -> dict[str, torch.Tensor]:
    """Features of a (w, h) ``image_size`` image (original pixels) moved into that image
    turned by ``rot`` = +1 (90 degrees counter-clockwise as displayed, ``torch.rot90(image,
    1, (-2, -1))``), -1 (clockwise) or 0: the point arrays ``keys`` (..., 2) are moved,
    ``oris`` (radians, image frame x right / y down, as the SIFT extractor's) turned by
    -rot * 90 degrees into [-pi, pi); descriptors, scores, sizes and depths (the camera
    turns about its optical axis) are unchanged."""
    out = dict(feats)
    if rot == 0:
        return out
    if rot not in (1, -1):
        raise ValueError(f"rot must be 0, +1 or -1, got {rot}.")
    w, h = (float(v) for v in image_size)
    for k in keys:
        if k not in out:
            continue
        x, y = out[k][..., 0], out[k][..., 1]
        out[k] = torch.stack([y, w - x] if rot == 1 else [h - y, x], -1)
    if "oris" in out and out["oris"].is_floating_point():
        o = out["oris"].double() - rot * math.pi / 2
        out["oris"] = (torch.remainder(o + math.pi, 2 * math.pi) - math.pi).to(
            out["oris"].dtype
        )
    return out


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def pad_features(
    feats: Mapping[str, torch.Tensor],
    n: int,
    image_size: torch.Tensor,
    name: str,
) -> dict[str, torch.Tensor]:
    """Exactly ``n`` keypoints per image plus ``keypoint_mask`` (n,) (True = real).

    The ``n`` best by ``keypoint_scores`` are kept (all, in stored order, when there are
    not more); padded entries are random points inside the (w, h) ``image_size`` (pixel
    centres), with score 0, random unit descriptors (upstream's ``pad_local_features``)
    and the :data:`FILL` value of the other per-keypoint fields. Deterministic per image
    ``name``.
    """
    kpts = feats["keypoints"]
    num = len(kpts)
    scores = feats.get("keypoint_scores")
    if scores is None:
        scores = kpts.new_ones(num)
    gen = torch.Generator().manual_seed(_seed(name))
    kpts, scores, valid, idx = pad_keypoints(
        kpts, scores.to(kpts), n, image_size, gen, return_indices=True
    )
    out = {"keypoints": kpts, "keypoint_mask": valid}
    if "keypoint_scores" in feats:
        out["keypoint_scores"] = scores
    pad = idx < 0
    for k, v in feats.items():
        if k in out or k == "keypoint_scores":
            continue
        if not (v.dim() > 0 and len(v) == num):  # not per keypoint
            out[k] = v
            continue
        g = v[idx.clamp(min=0)] if num else v.new_zeros((n, *v.shape[1:]))
        if pad.any():
            if k == "descriptors":
                r = torch.randn(int(pad.sum()), *v.shape[1:], generator=gen)
                g[pad] = torch.nn.functional.normalize(r, dim=-1).to(g)
            else:
                g[pad] = FILL.get(k, 0)
        out[k] = g
    return out


def view_cache(
    feats: Mapping[str, torch.Tensor],
    conf,
    scales: torch.Tensor,
    image_size: torch.Tensor,
    name: str,
) -> dict[str, torch.Tensor]:
    """``view["cache"]``: rescaled to the resized image, padded as ``conf`` says."""
    feats = {k: v for k, v in feats.items() if k not in META_KEYS}
    feats = rescale(feats, scales, list(conf.scale or []))
    if conf.padding_fn is not None:
        feats = pad_features(feats, int(conf.padding_length), image_size, name)
    return feats


def _per_keypoint(feats: Mapping[str, torch.Tensor], n: int) -> list[str]:
    return [k for k, v in feats.items() if v.dim() > 0 and len(v) == n]


def warp_features(
    feats: Mapping[str, torch.Tensor],
    H: torch.Tensor,
    image_size: torch.Tensor,
    name: str,
    thresh: float | None = None,
    max_num_keypoints: int | None = None,
    force_num_keypoints: bool = False,
) -> dict[str, torch.Tensor]:
    """Features of a source image moved into a view warped by ``H`` (3 x 3, source ->
    view pixels, library convention): keypoints outside the (w, h) view dropped, then
    scores <= ``thresh`` dropped, the best ``max_num_keypoints`` kept and, with
    ``force_num_keypoints``, padded to that count (:func:`pad_features`). Descriptors
    (and SIFT scales / orientations) are the source image's, unchanged."""
    feats = {k: v for k, v in feats.items() if k not in META_KEYS}
    n = len(feats["keypoints"])
    per_kpt = _per_keypoint(feats, n)
    kpts = warp_points(feats["keypoints"].double(), H.double()).float()
    keep = in_image(kpts, image_size) & torch.isfinite(kpts).all(-1)
    scores = feats.get("keypoint_scores")
    if thresh is not None and thresh > 0 and scores is not None:
        keep &= scores > thresh
    out = {k: (v[keep] if k in per_kpt else v) for k, v in feats.items()}
    out["keypoints"] = kpts[keep]
    k = -1 if max_num_keypoints is None else int(max_num_keypoints)
    if force_num_keypoints:
        if k <= 0:
            raise ConfigError(
                "load_features.force_num_keypoints needs max_num_keypoints > 0."
            )
        return pad_features(out, k, image_size, name)
    m = len(out["keypoints"])
    if 0 < k < m:
        s = out.get("keypoint_scores", out["keypoints"].new_ones(m))
        idx = torch.topk(s, k).indices
        out = {kk: (v[idx] if kk in per_kpt else v) for kk, v in out.items()}
    return out
