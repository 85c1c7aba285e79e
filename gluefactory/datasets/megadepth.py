"""MegaDepth pairs with depth and poses: LightGlue's fine-tuning data (facts 4.2).

Layout under ``data_dir`` (the D2-Net preprocessing, as distributed by Glue Factory):

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
bins. Draws come from ``RandomState(seed)`` and are redone by
``sample_new_items(seed + epoch)`` (the trainer's ``dataset_callback_fn``). A split
with ``<split>_pairs`` (e.g. ``valid_pairs.txt``, the MegaDepth-1500 pairs) uses that
fixed list instead. Scene lists and pair files are looked up in
``megadepth_scene_lists/`` (shipped) unless given as a path.

Views: the image is resized (long side ``preprocessing.resize``, default 1024,
antialiased) and zero-padded to a square at the bottom/right (``square_pad``); the
depth is resized with nearest neighbours and padded with 0 (= invalid). ``camera`` is
the resized camera with the *real* image size (Glue Factory approximates it by
2 (cx, cy)), ``T_w2cam`` the pose. Pairs carry ``T_0to1``, ``T_1to0`` and
``overlap_0to1``; names are ``<scene>/<stem0>_<stem1>``. ``views: 1`` yields single
images (export), with the view keys at the top level.

Cached features (``load_features.do``; written by ``python -m
gluefactory.scripts.export_megadepth``, layout in :mod:`.feature_cache`): each view gets
``cache`` (keypoints rescaled to the resized image, padded to ``padding_length`` with
``keypoint_mask``, plus ``depth_keypoints`` / ``valid_depth_keypoints`` when exported
with sparse depth), which the pipeline uses with ``model.allow_no_extract``. With
``read_image: false`` the image file is not opened at all (its size is in the cache) and,
with keypoint depths cached (``skip_depth_map``), neither is the depth map: an item is
then a few HDF5 reads (upstream glue-factory#124 still decoded both).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .. import settings
from ..geometry.wrappers import Camera, Pose
from ..utils.errors import ConfigError, DataError
from ..utils.image import ImagePreprocessor, numpy_image_to_torch, read_image
from .base_dataset import BaseDataset
from .feature_cache import (
    LOAD_FEATURES_CONF,
    FeatureCache,
    check_load_features,
    view_cache,
)

logger = logging.getLogger(__name__)
SCENE_LISTS = Path(__file__).parent / "megadepth_scene_lists"
DOWNLOAD_HINT = (
    "Get MegaDepth (about 420 GB) with `python -m gluefactory.datasets.training_downloads "
    "megadepth`, or convert posed images with "
    "`python -m gluefactory.datasets.megadepth_convert`."
)
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


class MegaDepth(BaseDataset):
    default_conf = {
        "data_dir": "megadepth",  # under the data root unless absolute
        "depth_subpath": "depth_undistorted/",
        "image_subpath": "Undistorted_SfM/",
        "info_dir": "scene_info/",
        "train_split": "train_scenes_clean.txt",
        "train_num_per_scene": 500,
        "train_pairs": None,
        "val_split": "valid_scenes_clean.txt",
        "val_num_per_scene": None,
        "val_pairs": None,
        "test_split": "test_scenes_clean.txt",
        "test_num_per_scene": None,
        "test_pairs": None,
        "views": 2,  # 2: pairs; 1: single images (export)
        "min_overlap": 0.3,
        "max_overlap": 1.0,
        "num_overlap_bins": 1,
        "sort_by_overlap": False,
        "read_depth": True,
        "read_image": True,
        "grayscale": False,
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
        if conf.views not in (1, 2):
            raise ConfigError(f"megadepth: views must be 1 or 2, got {conf.views}.")
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
        if self.conf.load_features.do:
            self.cache = FeatureCache(self.conf.load_features, EXPORT_HINT, "megadepth")
        self.scenes: dict[str, dict] = {}
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
        if self.conf.views == 1:
            self.items = [
                (s, i) for s, info in self.scenes.items() for i in info["valid"]
            ]
        elif pairs_file is not None:
            self.items = self._read_pairs(pairs_file)
        else:
            self.sample_new_items(int(self.conf.seed))

    def _load_info(self, scene: str) -> dict | None:
        path = self.root / self.conf.info_dir / f"{scene}.npz"
        if not path.is_file():
            msg = f"megadepth: scene_info of scene {scene} not found: {path}."
            if self.conf.skip_missing_scenes:
                logger.warning(msg)
                return None
            raise DataError(f"{msg} {DOWNLOAD_HINT} (or set skip_missing_scenes)")
        try:
            npz = np.load(path, allow_pickle=True)
            info = {
                k: npz[k]
                for k in (
                    "image_paths",
                    "depth_paths",
                    "intrinsics",
                    "poses",
                    "overlap_matrix",
                )
            }
        except (KeyError, ValueError, OSError) as e:
            raise DataError(
                f"megadepth: corrupt or incomplete scene_info {path}: {e}"
            ) from e
        n = len(info["image_paths"])
        for k in ("depth_paths", "intrinsics", "poses"):
            if len(info[k]) != n:
                raise DataError(
                    f"megadepth: {path}: {k} has {len(info[k])} entries, image_paths {n}."
                )
        if info["overlap_matrix"].shape != (n, n):
            raise DataError(f"megadepth: {path}: overlap_matrix is not {n} x {n}.")
        valid = [
            i
            for i in range(n)
            if info["image_paths"][i] is not None
            and info["depth_paths"][i] is not None
            and str(info["image_paths"][i])
            and str(info["depth_paths"][i])
        ]
        info["valid"] = np.array(valid, dtype=int)
        info["index"] = {
            "/".join(Path(str(info["image_paths"][i])).parts[-3:]): i for i in valid
        }
        return info

    def _read_pairs(self, value) -> list[tuple]:
        path = _resolve_list(value, "pairs")
        items = []
        for ln, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            scene = parts[0].split("/")[0]
            if scene not in self.scenes:
                raise DataError(
                    f"{path}:{ln}: scene {scene} is not in the {self.split} split."
                )
            index = self.scenes[scene]["index"]
            try:
                i, j = index[parts[0]], index[parts[1]]
            except KeyError as e:
                raise DataError(
                    f"{path}:{ln}: image {e.args[0]} is not (with depth) in scene_info/{scene}.npz."
                ) from None
            ov = self.scenes[scene]["overlap_matrix"]
            items.append((scene, i, j, float(min(ov[i, j], ov[j, i]))))
        return items

    def sample_new_items(self, seed: int) -> None:
        """Redraw the pairs of every scene (the trainer calls it with seed + epoch)."""
        if self.conf.views == 1 or self.conf[f"{self.split}_pairs"] is not None:
            return
        rng = np.random.RandomState(int(seed) % 2**32)
        c = self.conf
        items = []
        for scene, info in self.scenes.items():
            v = info["valid"]
            ov = info["overlap_matrix"][v][:, v]
            pairs = sample_pairs(
                ov, c[f"{self.split}_num_per_scene"], c.min_overlap, c.max_overlap,
                c.num_overlap_bins, rng,
            )  # fmt: skip
            items += [
                (scene, int(v[int(a)]), int(v[int(b)]), float(o)) for a, b, o in pairs
            ]
        if not items:
            raise DataError(
                f"megadepth: no pair of the {self.split} split has an overlap in "
                f"({c.min_overlap}, {c.max_overlap}] (scenes: {', '.join(self.scenes)})."
            )
        if c.sort_by_overlap:
            items.sort(key=lambda t: -t[3])
        else:
            order = rng.permutation(len(items))
            items = [items[k] for k in order]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def depth_path(self, scene: str, idx: int) -> Path:
        """The depth map file of image ``idx`` of ``scene``."""
        stem = Path(str(self.scenes[scene]["image_paths"][idx])).stem
        return self.root / self.conf.depth_subpath / scene / f"{stem}.h5"

    def _view(self, scene: str, idx: int) -> dict:
        info = self.scenes[scene]
        rel = str(info["image_paths"][idx])
        path = self.root / rel
        name = Path(rel).name
        lf = self.conf.load_features
        feats = self.cache.read(name, scene) if self.cache is not None else None
        data = {}
        if self.conf.read_image:
            image = numpy_image_to_torch(read_image(path, self.conf.grayscale))
            h, w = image.shape[-2:]
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
                from PIL import Image

                try:
                    with Image.open(path) as im:
                        w, h = im.size
                except OSError as e:
                    raise DataError(f"megadepth: cannot read image {path}: {e}") from e
            out = self.pre.sizes(h, w)
        tw, th = (int(v) for v in out["image_size"])
        K = torch.from_numpy(np.asarray(info["intrinsics"][idx], np.float64)).float()
        cam = Camera.from_calibration_matrix(
            K, torch.tensor([w, h], dtype=torch.float32)
        )
        data["camera"] = cam.scale(out["scales"])
        data["T_w2cam"] = Pose.from_4x4mat(
            torch.from_numpy(np.asarray(info["poses"][idx], np.float64)).float()
        )
        sparse_depth = feats is not None and "depth_keypoints" in feats
        if self.conf.read_depth and not (sparse_depth and lf.skip_depth_map):
            depth = self.read_depth_map(self.depth_path(scene, idx), (h, w))
            depth = torch.nn.functional.interpolate(
                depth[None, None], size=(th, tw), mode="nearest"
            )[0, 0]
            if self.conf.preprocessing.square_pad:
                side = max(th, tw)
                depth = torch.nn.functional.pad(depth, (0, side - tw, 0, side - th))
            data["depth"] = depth
        if feats is not None:
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
        try:
            with h5py.File(path, "r") as f:
                depth = np.asarray(f["depth"], np.float32)
        except (KeyError, OSError) as e:
            raise DataError(f"megadepth: cannot read /depth from {path}: {e}") from e
        if depth.shape != tuple(hw):
            raise DataError(
                f"megadepth: depth {path} is {depth.shape[1]}x{depth.shape[0]} but its "
                f"image is {hw[1]}x{hw[0]}."
            )
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)
        return torch.from_numpy(depth.astype(np.float32))

    def __getitem__(self, k: int) -> dict:
        if self.conf.views == 1:
            scene, i = self.items[k]
            view = self._view(scene, int(i))
            return {**view, "name": f"{scene}/{view['name']}", "scene": scene}
        scene, i, j, overlap = self.items[k]
        v0, v1 = self._view(scene, i), self._view(scene, j)
        T_0to1 = v1["T_w2cam"] @ v0["T_w2cam"].inv()
        return {
            "name": f"{scene}/{Path(v0['name']).stem}_{Path(v1['name']).stem}",
            "scene": scene,
            "view0": v0,
            "view1": v1,
            "T_0to1": T_0to1,
            "T_1to0": T_0to1.inv(),
            "overlap_0to1": torch.tensor(overlap, dtype=torch.float32),
        }


__main_dataset__ = MegaDepth
