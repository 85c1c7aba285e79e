"""MegaDepth pairs with depth and poses: LightGlue's fine-tuning data (facts 4.2).

Layout under ``data_dir`` (the D2-Net preprocessing, as distributed by Glue Factory;
read by :mod:`gluefactory.formats.megadepth`, which checks every usable pose):

    Undistorted_SfM/<scene>/images/*.jpg
    depth_undistorted/<scene>/<stem>.h5        (dataset "/depth", same size as the image)
    scene_info/<scene>.npz                     (image_paths, depth_paths, intrinsics,
                                                poses (4x4 world->camera), overlap_matrix)

``image_paths`` are relative to ``data_dir``; an image is used only when both its image
and depth paths are set; its depth is read from ``depth_subpath/<scene>/<stem>.h5``.
Intrinsics come from COLMAP, whose principal point already follows the library
convention (pixel centres at +0.5): no conversion is needed.

Pairs: per scene, ``<split>_num_per_scene`` pairs (i < j) drawn in ``num_overlap_bins``
equal bins of the (symmetrised, min) overlap in (min_overlap, max_overlap]; a bin with
fewer than twice its quota of candidates is skipped and its quota spread over the other
bins. ``[num_pos, num_neg]`` (views 2 only) adds ``num_neg`` negative pairs, drawn
uniformly among the pairs with overlap <= 0 (upstream's ``mat <= 0``); null counts mean
all positives / no negatives. Draws come from ``RandomState(seed)`` and are redone by
``sample_new_items(seed + epoch)`` (the trainer's ``dataset_callback_fn``). A split
with ``<split>_pairs`` (e.g. ``valid_pairs.txt``, the MegaDepth-1500 pairs) uses that
fixed list instead (one pair, or with ``views: 3`` one triplet, of names per line).
Scene lists and pair files are looked up in ``megadepth_scene_lists/`` (shipped) unless
given as a path.

Triplets (``views: 3``): ``<split>_num_per_scene`` triplets (a, b, c) of distinct images
per scene, where b and c both overlap a in (min_overlap, max_overlap]: a pair (a, b) is
drawn among the images with at least two such partners and c among a's other partners;
with ``triplet_enforce_overlap`` b and c must overlap too, and the triplet is drawn
uniformly among all such triangles (views in random order). ``num_overlap_bins`` must be
1 (as upstream). Upstream's triplet sampler is broken (``self.depth``; with
``triplet_enforce_overlap`` nothing is ever added; the diagonal of the overlap matrix
counts as a partner; ``selected = range(num)`` drops the random draw): this is what it
was meant to do.

Views: in the train split only, each view is turned by +-90 degrees with probability
``p_rotate`` (the sign at random), drawn from ``default_rng([seed, ROTATE_STREAM,
item, view])`` with the seed of the last ``sample_new_items`` (``seed`` at first): an
item is the same in any worker, order or run. The image and depth are turned before the
resize; K and the pose follow exactly (K' = A K R^T, T' = R T with A the pixel map and R
its in-plane rotation), so depth-based ground truth stays exact. Upstream's pose turn is
right, but it builds the turned K from the *tensor* shape (C, H', W') read as (H', W'):
its principal point is off (cx' = W - cy instead of H - cy for a clockwise turn, cy' =
C - cx instead of W - cx for a counter-clockwise one). Then the image is resized (long side
``preprocessing.resize``, default 1024, antialiased) and zero-padded to a square at the
bottom/right (``square_pad``); the depth is resized with the one depth rule
(``nearest-exact``, :mod:`gluefactory.formats.depth`) and padded
with 0 (= invalid). ``camera`` is the resized camera with the *real* image size (Glue
Factory approximates it by 2 (cx, cy)), ``T_w2cam`` the pose. Pairs carry ``T_0to1``,
``T_1to0`` and ``overlap_0to1``; names are ``<scene>/<stem0>_<stem1>``. Triplets carry
view0/1/2, ``T_{i}to{j}`` for all six ordered pairs and ``overlap_0to1``,
``overlap_0to2``, ``overlap_1to2``; names ``<scene>/<stem0>_<stem1>_<stem2>``.
``views: 1`` yields single images (export), with the view keys at the top level:
``<split>_num_per_scene`` of each scene (redrawn each epoch, as upstream), or all.

Cached features (``load_features.do``; written by ``python -m
gluefactory.scripts.export_megadepth``, layout in :mod:`.feature_cache`): each view gets
``cache`` (keypoints rescaled to the resized image, padded to ``padding_length`` with
``keypoint_mask``, plus ``depth_keypoints`` / ``valid_depth_keypoints`` when exported
with sparse depth), which the pipeline uses with ``model.allow_no_extract``. A turned
view's cached points (the ``load_features.scale`` arrays) and SIFT ``oris`` are turned
with it, in original pixels before the rescale (upstream turns keypoints only, after
rescaling them with the turned image's scales); descriptors are those of the upright
image, as upstream. With ``read_image: false`` the image file is not opened at all (its
size is in the cache) and, with keypoint depths cached (``skip_depth_map``), neither is
the depth map: an item is then a few HDF5 reads (upstream glue-factory#124 still
decoded both).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from .. import settings
from ..formats.depth import read_depth, resize_depth
from ..formats.megadepth import (
    DEPTH_SUBPATH,
    IMAGE_SUBPATH,
    INFO_DIR,
    SceneInfo,
    read_scene_info,
)
from ..formats.posed import check_distinct
from ..geometry.wrappers import Camera, Pose
from ..utils.errors import ConfigError, DataError
from ..utils.image import (
    ImagePreprocessor,
    numpy_image_to_torch,
    read_image,
    read_image_size,
)
from .base_dataset import BaseDataset
from .feature_cache import (
    LOAD_FEATURES_CONF,
    FeatureCache,
    check_load_features,
    rotate_features,
    view_cache,
)

logger = logging.getLogger(__name__)
SCENE_LISTS = Path(__file__).parent / "megadepth_scene_lists"
DOWNLOAD_HINT = (
    "Get MegaDepth (about 420 GB) with `python -m gluefactory.datasets.sources.training_downloads "
    "megadepth`, or convert posed images with "
    "`python -m gluefactory.datasets.sources.megadepth_convert`."
)
#: the stream of the rotation draws in ``default_rng([seed, ROTATE_STREAM, item, view])``
ROTATE_STREAM = 0x726F74
EXPORT_HINT = (
    "Export them with `python -m gluefactory.scripts.export_megadepth --method "
    "<sp|sp_open|cv2-sift|disk|aliked|xfeat> [--export_sparse_depth]` (the folder "
    "name must match load_features.path), or set load_features.do=false."
)


def _resolve_list(value, kind: str) -> Path:
    path = Path(str(value)).expanduser()
    if not path.is_absolute() and not path.exists():
        path = SCENE_LISTS / path
    if not path.is_file():
        raise ConfigError(
            f"megadepth: {kind} file not found: {value} (looked in {path})."
        )
    return path


def read_scene_list(value) -> list[str]:
    """A list of scenes (list/tuple), or a file with one scene per line."""
    if value is None:
        return []
    if not isinstance(value, (str, Path)):
        return [str(s) for s in value]
    path = _resolve_list(value, "scene list")
    return [s.strip() for s in path.read_text().splitlines() if s.strip()]


def sample_pairs(
    overlap: np.ndarray,
    num: int | None,
    min_overlap: float,
    max_overlap: float,
    num_bins: int,
    rng: np.random.RandomState,
) -> np.ndarray:
    """(K, 3) array of (i, j, overlap) with i < j, drawn in overlap bins (module doc)."""
    ov = np.minimum(overlap, overlap.T)
    i, j = np.triu_indices(len(ov), k=1)
    o = ov[i, j]
    keep = (o > min_overlap) & (o <= max_overlap)
    cand = np.stack([i[keep], j[keep], o[keep]], -1)
    if num is None or len(cand) <= num:
        return cand
    if num_bins <= 1:
        return cand[rng.choice(len(cand), num, replace=False)]
    edges = np.linspace(min_overlap, max_overlap, num_bins + 1)
    bins = [
        cand[(cand[:, 2] > lo) & (cand[:, 2] <= hi)]
        for lo, hi in zip(edges[:-1], edges[1:])
    ]
    per_bin = num // num_bins
    usable = [b for b in bins if len(b) >= 2 * per_bin]
    if not usable:
        return cand[rng.choice(len(cand), num, replace=False)]
    quota = num // len(usable)
    chosen = [b[rng.choice(len(b), min(quota, len(b)), replace=False)] for b in usable]
    return np.concatenate(chosen, 0)


def sample_negative_pairs(
    overlap: np.ndarray, num: int | None, rng: np.random.RandomState
) -> np.ndarray:
    """(K, 3) array of (i, j, overlap), i < j, among the pairs with overlap <= 0."""
    ov = np.minimum(overlap, overlap.T)
    i, j = np.triu_indices(len(ov), k=1)
    keep = ov[i, j] <= 0
    cand = np.stack([i[keep], j[keep], ov[i, j][keep]], -1)
    if num is None or len(cand) <= num:
        return cand
    return cand[rng.choice(len(cand), num, replace=False)]


def sample_triplets(
    overlap: np.ndarray,
    num: int | None,
    min_overlap: float,
    max_overlap: float,
    enforce_overlap: bool,
    rng: np.random.RandomState,
) -> np.ndarray:
    """(K, 3) int array of distinct (a, b, c): b and c overlap a (module doc)."""
    ov = np.minimum(overlap, overlap.T)
    good = (ov > min_overlap) & (ov <= max_overlap)
    np.fill_diagonal(good, False)
    if not enforce_overlap:
        deg = good.sum(1)
        start = np.concatenate([[0], np.cumsum(deg)[:-1]])
        rows, cols = np.nonzero(good)  # row-major: a's partners are contiguous
        edges = np.flatnonzero(deg[rows] >= 2)
        if num is not None and len(edges) > num:
            edges = edges[rng.choice(len(edges), num, replace=False)]
        a, b = rows[edges], cols[edges]
        pos = edges - start[a]  # b's rank among a's partners: c skips it
        r = (rng.random_sample(len(a)) * (deg[a] - 1)).astype(int)
        c = cols[start[a] + r + (r >= pos)]
        return np.stack([a, b, c], -1).astype(int)
    # every triangle a < b < c once; counted first so that only the chosen are listed
    upper = [np.flatnonzero(good[a, a + 1 :]) + a + 1 for a in range(len(good))]
    counts = np.array([int(np.triu(good[np.ix_(p, p)], 1).sum()) for p in upper])
    total = int(counts.sum())
    if num is None or total <= num:
        wanted = np.arange(total)
    else:  # Generator.choice: O(num) memory however many triangles there are
        gen = np.random.default_rng(rng.randint(2**31))
        wanted = np.sort(gen.choice(total, num, replace=False))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for a, p in enumerate(upper):
        lo, hi = np.searchsorted(wanted, offsets[a : a + 2])
        if lo == hi:
            continue
        b, c = np.nonzero(np.triu(good[np.ix_(p, p)], 1))
        k = wanted[lo:hi] - offsets[a]
        out.append(np.stack([np.full(len(k), a), p[b[k]], p[c[k]]], -1))
    if not out:
        return np.zeros((0, 3), int)
    tri = np.concatenate(out, 0)
    order = rng.random_sample(tri.shape).argsort(1)  # random roles: anchor, 1, 2
    return np.take_along_axis(tri, order, 1).astype(int)


def quarter_turn(rot: int, w: float, h: float) -> np.ndarray:
    """The pixel map (3 x 3, homogeneous, library convention) of a (w, h) image turned
    by ``rot`` = +1 (90 degrees counter-clockwise as displayed, ``torch.rot90(image, 1,
    (-2, -1))``) or -1 (clockwise). Its 2 x 2 block is the in-plane rotation R of the
    camera frame (x right, y down): K' = A K R^T and T_w2cam' = R T_w2cam."""
    if rot == 1:  # x' = y, y' = w - x
        return np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w], [0.0, 0.0, 1.0]])
    if rot == -1:  # x' = h - y, y' = x
        return np.array([[0.0, -1.0, h], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    raise ValueError(f"rot must be +1 or -1, got {rot}.")


def _is_count(v) -> bool:
    return v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def split_num_per_scene(value, key: str, views: int) -> tuple[int | None, int | None]:
    """``<split>_num_per_scene`` as (num_pos, num_neg); a ConfigError names ``key``."""
    if OmegaConf.is_list(value) or isinstance(value, (list, tuple)):
        value = list(value)
        if len(value) != 2 or not all(_is_count(v) for v in value):
            raise ConfigError(
                f"megadepth: {key} must be null, a count or [num_pos, num_neg] "
                f"(counts >= 0 or null), got {value!r}."
            )
        if views != 2:
            raise ConfigError(
                f"megadepth: {key}={value!r}: negative pairs ([num_pos, num_neg]) need "
                f"views: 2, got views: {views}."
            )
        return value[0], value[1]
    if not _is_count(value):
        raise ConfigError(
            f"megadepth: {key} must be null, a count >= 0 or [num_pos, num_neg], "
            f"got {value!r}."
        )
    return value, None


class MegaDepth(BaseDataset):
    sizes_without_images = True  # read_image: false, without cached features

    default_conf = {
        "data_dir": "megadepth",  # under the data root unless absolute
        "depth_subpath": f"{DEPTH_SUBPATH}/",
        "image_subpath": f"{IMAGE_SUBPATH}/",
        "info_dir": f"{INFO_DIR}/",
        "train_split": "train_scenes_clean.txt",
        "train_num_per_scene": 500,
        "train_pairs": None,
        "val_split": "valid_scenes_clean.txt",
        "val_num_per_scene": None,
        "val_pairs": None,
        "test_split": "test_scenes_clean.txt",
        "test_num_per_scene": None,
        "test_pairs": None,
        "views": 2,  # 2: pairs; 1: single images (export); 3: triplets
        "min_overlap": 0.3,
        "max_overlap": 1.0,
        "num_overlap_bins": 1,
        "sort_by_overlap": False,  # pairs only
        "triplet_enforce_overlap": False,  # views 3: view1 and view2 overlap too
        "read_depth": True,
        "read_image": True,
        "grayscale": False,
        "p_rotate": 0.0,  # train split: probability of a +-90 degree turn per view
        # no effect, accepted for upstream configs: the only random draws of an item
        # (its turns) are always seeded by (seed, item, view)
        "reseed": False,
        "preprocessing": {
            **ImagePreprocessor.default_conf,
            "resize": 1024,
            "side": "long",
            "square_pad": True,
        },
        "skip_missing_scenes": False,  # True: warn about scenes without scene_info
        # cached features (python -m gluefactory.scripts.export_megadepth), put in
        # view["cache"]; see gluefactory/datasets/feature_cache.py
        "load_features": {
            **LOAD_FEATURES_CONF,
            "path": "exports/megadepth-undist-depth-r1024_SP-k2048-nms3/{scene}.h5",
            # with keypoint depths cached, the depth map is not read (nor needed)
            "skip_depth_map": True,
        },
    }

    def _init(self, conf):
        if conf.views not in (1, 2, 3) or isinstance(conf.views, bool):
            raise ConfigError(
                f"megadepth: views must be 1, 2 or 3, got {conf.views!r}."
            )
        for split in ("train", "val", "test"):
            key = f"{split}_num_per_scene"
            split_num_per_scene(conf[key], key, conf.views)
        p = conf.p_rotate
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(
                f"megadepth: p_rotate must be a probability in [0, 1], got {p!r}."
            )
        if not isinstance(conf.triplet_enforce_overlap, bool):
            raise ConfigError(
                "megadepth: triplet_enforce_overlap must be true or false, got "
                f"{conf.triplet_enforce_overlap!r}."
            )
        if conf.views == 3 and conf.num_overlap_bins != 1:
            raise ConfigError(
                f"megadepth: views: 3 needs num_overlap_bins: 1 (overlap bins are not "
                f"implemented for triplets, as upstream), got {conf.num_overlap_bins}."
            )
        if not 0 <= conf.min_overlap < conf.max_overlap:
            raise ConfigError(
                f"megadepth: need 0 <= min_overlap < max_overlap, got "
                f"{conf.min_overlap}, {conf.max_overlap}."
            )
        root = Path(str(conf.data_dir)).expanduser()
        self.root = root if root.is_absolute() else settings.data_root() / root
        if not (self.root / conf.info_dir).is_dir():
            raise DataError(
                f"MegaDepth not found: no {self.root / conf.info_dir}. {DOWNLOAD_HINT}"
            )
        self.preprocessor = ImagePreprocessor(conf.preprocessing)
        check_load_features(conf.load_features, "megadepth")
        if conf.load_features.do and conf.read_image:
            logger.info(
                "megadepth: cached features are loaded but read_image is true: images "
                "are still decoded (set data.read_image=false to skip them)."
            )

    def get_dataset(self, split: str) -> _Split:
        if split not in ("train", "val", "test"):
            raise ConfigError(
                f"megadepth has splits train, val and test, not {split!r}."
            )
        return _Split(self, split)


class _Split(Dataset):
    def __init__(self, parent: MegaDepth, split: str):
        self.parent, self.conf, self.split = parent, parent.conf, split
        self.root, self.pre = parent.root, parent.preprocessor
        self.cache = None
        self.seed = int(self.conf.seed) % 2**32  # of the rotation draws
        if self.conf.load_features.do:
            self.cache = FeatureCache(self.conf.load_features, EXPORT_HINT, "megadepth")
        self.scenes: dict[str, SceneInfo] = {}
        self.index: dict[str, dict[str, int]] = {}  # scene -> image path -> index
        for scene in read_scene_list(self.conf[f"{split}_split"]):
            info = self._load_info(scene)
            if info is not None:
                self.scenes[scene] = info
        if not self.scenes:
            raise DataError(
                f"megadepth: no scene of the {split} split found in "
                f"{self.root / self.conf.info_dir}. {DOWNLOAD_HINT}"
            )
        self.items: list[tuple] = []
        pairs_file = self.conf[f"{split}_pairs"]
        if pairs_file is not None and self.conf.views != 1:
            self.items = self._read_pairs(pairs_file)
        else:
            self.sample_new_items(int(self.conf.seed))

    def _load_info(self, scene: str) -> SceneInfo | None:
        path = self.root / self.conf.info_dir / f"{scene}.npz"
        if not path.is_file():
            msg = f"megadepth: scene_info of scene {scene} not found: {path}."
            if self.conf.skip_missing_scenes:
                logger.warning(msg)
                return None
            raise DataError(f"{msg} {DOWNLOAD_HINT} (or set skip_missing_scenes)")
        info = read_scene_info(path)
        self.index[scene] = {
            "/".join(Path(str(info.image_paths[i])).parts[-3:]): int(i)
            for i in info.valid
        }
        return info

    def _read_pairs(self, value) -> list[tuple]:
        """Items of a pairs file (``views`` names per line, further columns ignored)."""
        path = _resolve_list(value, "pairs")
        n = int(self.conf.views)
        items = []
        for ln, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < n:
                raise DataError(
                    f"{path}:{ln}: expected {n} image names (views: {n}), got "
                    f"{len(parts)}."
                )
            check_distinct(parts[:n], f"{path}:{ln}")
            scene = parts[0].split("/")[0]
            if scene not in self.scenes:
                raise DataError(
                    f"{path}:{ln}: scene {scene} is not in the {self.split} split."
                )
            index = self.index[scene]
            try:
                ids = [index[name] for name in parts[:n]]
            except KeyError as e:
                raise DataError(
                    f"{path}:{ln}: image {e.args[0]} is not (with depth) in scene_info/{scene}.npz."
                ) from None
            ov = self.scenes[scene].overlap_matrix
            pairs = [(0, 1)] if n == 2 else [(0, 1), (0, 2), (1, 2)]
            overlaps = [
                float(min(ov[ids[a], ids[b]], ov[ids[b], ids[a]])) for a, b in pairs
            ]
            items.append((scene, *ids, *overlaps))
        return items

    def sample_new_items(self, seed: int) -> None:
        """Redraw the pairs (triplets) of every scene and the rotations of every item
        (the trainer calls it with seed + epoch)."""
        self.seed = int(seed) % 2**32
        c = self.conf
        if c.views != 1 and c[f"{self.split}_pairs"] is not None:
            return
        rng = np.random.RandomState(self.seed)
        key = f"{self.split}_num_per_scene"
        num_pos, num_neg = split_num_per_scene(c[key], key, c.views)
        if c.views == 1:  # single images: all, or num_per_scene drawn per scene
            self.items = [
                (scene, int(i))
                for scene, info in self.scenes.items()
                for i in (
                    np.sort(rng.choice(info.valid, num_pos, replace=False))
                    if num_pos is not None and len(info.valid) > num_pos
                    else info.valid
                )
            ]
            return
        items = []
        for scene, info in self.scenes.items():
            v = info.valid
            ov = info.overlap_matrix[v][:, v]
            if c.views == 3:
                tri = sample_triplets(
                    ov, num_pos, c.min_overlap, c.max_overlap,
                    c.triplet_enforce_overlap, rng,
                )  # fmt: skip
                sym = np.minimum(ov, ov.T)
                items += [
                    (scene, *(int(v[x]) for x in (a, b, d)),
                     float(sym[a, b]), float(sym[a, d]), float(sym[b, d]))
                    for a, b, d in tri
                ]  # fmt: skip
                continue
            pairs = sample_pairs(
                ov, num_pos, c.min_overlap, c.max_overlap, c.num_overlap_bins, rng
            )
            if num_neg:  # drawn after the scene's positives
                neg = sample_negative_pairs(ov, num_neg, rng)
                pairs = np.concatenate([pairs.reshape(-1, 3), neg], 0)
            items += [
                (scene, int(v[int(a)]), int(v[int(b)]), float(o)) for a, b, o in pairs
            ]
        if not items:
            what = "triplet" if c.views == 3 else "pair"
            raise DataError(
                f"megadepth: no {what} of the {self.split} split has an overlap in "
                f"({c.min_overlap}, {c.max_overlap}] (scenes: {', '.join(self.scenes)})."
            )
        if c.sort_by_overlap and c.views == 2:
            items.sort(key=lambda t: -t[3])
        else:
            order = rng.permutation(len(items))
            items = [items[k] for k in order]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def depth_path(self, scene: str, idx: int) -> Path:
        """The depth map file of image ``idx`` of ``scene``."""
        stem = Path(str(self.scenes[scene].image_paths[idx])).stem
        return self.root / self.conf.depth_subpath / scene / f"{stem}.h5"

    def rotation(self, k: int, view: int = 0) -> int:
        """The turn of view ``view`` of item ``k``: 0, +1 (90 degrees counter-clockwise
        as displayed) or -1; never in val / test. Deterministic in (seed, k, view)."""
        p = float(self.conf.p_rotate)
        if self.split != "train" or p <= 0:
            return 0
        rng = np.random.default_rng([self.seed, ROTATE_STREAM, int(k), int(view)])
        u, sign = rng.random(2)
        return 0 if u >= p else (1 if sign < 0.5 else -1)

    def _view(self, scene: str, idx: int, rot: int = 0) -> dict:
        info = self.scenes[scene]
        rel = str(info.image_paths[idx])
        path = self.root / rel
        name = Path(rel).name
        lf = self.conf.load_features
        feats = self.cache.read(name, scene) if self.cache is not None else None
        data = {}
        if self.conf.read_image:
            image = numpy_image_to_torch(read_image(path, self.conf.grayscale))
            h, w = image.shape[-2:]
            if rot:  # before the resize and square pad, as upstream
                image = torch.rot90(image, rot, (-2, -1)).contiguous()
            out = self.pre(image)
            data["image"] = out.pop("image")
            if feats is not None and "image_size" in feats:
                cw, ch = (int(v) for v in feats["image_size"])
                if (cw, ch) != (w, h):
                    raise DataError(
                        f"megadepth: the cached features of {scene}/{name} are for a "
                        f"{cw}x{ch} image, {path} is {w}x{h}: re-export the features "
                        "(--overwrite)."
                    )
        else:  # only the size is needed: from the cache, else the file header
            if feats is not None and "image_size" in feats:
                w, h = (int(v) for v in feats["image_size"])
            else:
                w, h = read_image_size(path)
            out = self.pre.sizes(w, h) if rot else self.pre.sizes(h, w)
        tw, th = (int(v) for v in out["image_size"])
        K = np.asarray(info.intrinsics[idx], np.float64)
        T = np.asarray(info.poses[idx], np.float64)
        size = [w, h]
        if rot:  # exact: x' = A x for pixels, X' = R X in the camera frame
            A = quarter_turn(rot, w, h)
            R = np.eye(4)
            R[:2, :2] = A[:2, :2]
            K, T, size = A @ K @ R[:3, :3].T, R @ T, [h, w]
        cam = Camera.from_calibration_matrix(
            torch.from_numpy(K).float(), torch.tensor(size, dtype=torch.float32)
        )
        data["camera"] = cam.scale(out["scales"])
        data["T_w2cam"] = Pose.from_4x4mat(torch.from_numpy(T).float())
        sparse_depth = feats is not None and "depth_keypoints" in feats
        if self.conf.read_depth and not (sparse_depth and lf.skip_depth_map):
            depth = self.read_depth_map(self.depth_path(scene, idx), (h, w))
            if rot:
                depth = torch.rot90(depth, rot, (0, 1)).contiguous()
            depth = resize_depth(depth, (th, tw))
            if self.conf.preprocessing.square_pad:
                side = max(th, tw)
                depth = torch.nn.functional.pad(depth, (0, side - tw, 0, side - th))
            data["depth"] = depth
        if feats is not None:
            if rot:  # in original pixels, before view_cache rescales them
                feats = rotate_features(feats, rot, (w, h), list(lf.scale or []))
            data["cache"] = view_cache(
                feats, lf, out["scales"], out["image_size"], f"{scene}/{name}"
            )
        return {
            **data,
            "image_size": out["image_size"],
            "scales": out["scales"],
            "original_image_size": out["original_image_size"],
            "name": name,
        }

    @staticmethod
    def read_depth_map(path: Path, hw: tuple[int, int]) -> torch.Tensor:
        """The (H, W) depth map of an image of size ``hw`` (0 = unknown)."""
        if not path.is_file():
            raise DataError(f"megadepth: depth file not found: {path}. {DOWNLOAD_HINT}")
        return torch.from_numpy(read_depth(path, (hw[1], hw[0])))

    def __getitem__(self, k: int) -> dict:
        n = int(self.conf.views)
        if n == 1:
            scene, i = self.items[k]
            view = self._view(scene, int(i), self.rotation(k))
            return {**view, "name": f"{scene}/{view['name']}", "scene": scene}
        scene, *rest = self.items[k]
        ids, overlaps = rest[:n], rest[n:]
        views = [
            self._view(scene, int(i), self.rotation(k, v)) for v, i in enumerate(ids)
        ]
        stems = "_".join(Path(view["name"]).stem for view in views)
        data = {"name": f"{scene}/{stems}", "scene": scene}
        data.update({f"view{v}": view for v, view in enumerate(views)})
        pairs = [(0, 1)] if n == 2 else [(0, 1), (0, 2), (1, 2)]
        for (a, b), overlap in zip(pairs, overlaps):
            T = views[b]["T_w2cam"] @ views[a]["T_w2cam"].inv()
            data[f"T_{a}to{b}"], data[f"T_{b}to{a}"] = T, T.inv()
            data[f"overlap_{a}to{b}"] = torch.tensor(overlap, dtype=torch.float32)
        return data


__main_dataset__ = MegaDepth
