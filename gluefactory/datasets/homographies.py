"""Synthetic homography pairs from single images: LightGlue's pre-training data (facts 4.1).

Images come from a list file, a folder or glob patterns, so that one can train on one's
own photographs:

- ``image_list`` set: a text file (in ``data_dir`` unless absolute) with one image path
  per line, relative to ``data_dir / image_dir`` (revisitop1m's ``revisitop1m.txt``);
- ``image_list: null``: every file under ``data_dir / image_dir`` matching one of the
  ``glob`` patterns (recursive, sorted).
- ``data_dir: photos``: the real photographs that ship with scikit-image, written to
  ``<data_root>/photos`` on first use (:mod:`gluefactory.datasets.sources.photos`).

The list is shuffled with ``RandomState(shuffle_seed)``; train = the first
``train_size`` images (null: all but the validation ones), val = the next ``val_size``.

Per item, both views come from one source image (long side first reduced to
``max_image_size`` with area interpolation): two homographies are sampled independently
(:func:`~gluefactory.geometry.homography.sample_homography_corners`, library convention)
and the image is warped to ``patch_shape`` (w, h) with OpenCV. ``H_0to1 = H1 H0^-1``
maps pixels of view0 to view1 in the library convention (pixel centres at +0.5, PLAN
item 5); OpenCV warps in the integer-centre convention, so the warp matrix is converted
once here. Each view is then photometrically augmented, independently
(:mod:`~gluefactory.datasets.augmentations`). ``triplet`` adds view2 (``H_0to2``,
``H_1to2``); ``right_only`` keeps view0 the whole image resized (difficulty 0).
``items_per_image`` > 1 gives each image that many distinct pairs per epoch (small sets).

Determinism: every random draw of an item comes from a generator seeded with
``(seed, epoch, index)`` (validation: epoch 0 always), so an item is the same in any
worker, order or process; :meth:`_Split.set_epoch` (or ``sample_new_items``) changes the
epoch and hence the training homographies.

Each view has ``image`` (3 x h x w, or 1 x h x w with ``grayscale``), ``image_size``
(w, h) = the patch size, ``scales`` (1, 1) and ``original_image_size`` = the patch size
(features are extracted on the warped patch itself), plus ``H_source`` (3 x 3, source
image pixels -> patch pixels) and ``source_image_size``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from .. import settings
from ..geometry.homography import (
    homography_to_center_convention,
    sample_homography_corners,
)
from ..utils.errors import ConfigError, DataError
from ..utils.image import ImageReadError, numpy_image_to_torch, read_image
from .augmentations import Augmentation
from .base_dataset import BaseDataset
from .feature_cache import FeatureCache, rescale, warp_features

logger = logging.getLogger(__name__)

REVISITOP_HINT = (
    "Download revisitop1m (about 450 GB, +50 GB while unpacking) with "
    "`python -m gluefactory.datasets.sources.training_downloads revisitop1m`, or train on your "
    "own images: data.data_dir=/path/to/photos data.image_dir='' data.image_list=null, "
    "or on the built-in photographs: data.data_dir=photos data.image_dir='' "
    "data.image_list=null."
)
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
EXPORT_HINT = (
    "Export them with `python -m gluefactory.scripts.export_local_features --method "
    "<sp|sp_open|cv2-sift|disk|aliked|xfeat> --images <data_dir>/<image_dir>` "
    "(load_features.path: the file it writes), or set load_features.do=false."
)


def resolve_data_dir(data_dir: str) -> Path:
    """``data_dir`` relative to the data root unless absolute; ``photos`` is built in."""
    path = Path(str(data_dir)).expanduser()
    if str(data_dir) == "photos":
        from .sources.photos import ensure_photos

        return ensure_photos()
    return path if path.is_absolute() else settings.data_root() / path


def list_images(conf) -> tuple[Path, list[str]]:
    """(image root, image paths relative to it), in list-file or sorted-glob order."""
    root = resolve_data_dir(conf.data_dir)
    image_dir = root / str(conf.image_dir or "")
    if conf.image_list is not None:
        list_path = Path(str(conf.image_list)).expanduser()
        if not list_path.is_absolute():
            list_path = root / list_path
        if not list_path.is_file():
            raise DataError(f"Image list file not found: {list_path}. {REVISITOP_HINT}")
        names = [ln.strip() for ln in list_path.read_text().splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
        source = str(list_path)
    else:
        if not image_dir.is_dir():
            raise DataError(f"Image folder not found: {image_dir}. {REVISITOP_HINT}")
        patterns = list(conf.glob)
        found = {p for pat in patterns for p in image_dir.rglob(pat) if p.is_file()}
        names = sorted(str(p.relative_to(image_dir)) for p in found)
        source = f"{image_dir} (glob {patterns})"
    unique = list(dict.fromkeys(names))
    if len(unique) < len(names):
        logger.warning(
            "%d duplicate images in %s ignored.", len(names) - len(unique), source
        )
    if not unique:
        raise DataError(f"No images in {source}. {REVISITOP_HINT}")
    return image_dir, unique


def split_images(names: list[str], conf) -> dict[str, list[str]]:
    """Shuffle with RandomState(shuffle_seed); train first, then val (as Glue Factory).

    With ``val_images`` (names relative to ``image_dir``) those images are the
    validation split, in the given order, and never trained on; ``val_size`` is then
    ignored and training takes (up to ``train_size`` of) the shuffled rest."""
    names = list(names)
    if conf.get("val_images") is not None:
        val = [str(n) for n in conf.val_images]
        missing = sorted(set(val) - set(names))
        if missing:
            raise ConfigError(
                f"homographies.val_images: {missing} not among the {len(names)} images "
                f"found (names are relative to image_dir)."
            )
        rest = [n for n in names if n not in set(val)]
        np.random.RandomState(conf.shuffle_seed).shuffle(rest)
        n_train = len(rest) if conf.train_size is None else int(conf.train_size)
        if not 1 <= n_train <= len(rest):
            raise ConfigError(
                f"homographies: train_size={conf.train_size} does not fit the "
                f"{len(rest)} images left after val_images."
            )
        return {"train": rest[:n_train], "val": val}
    np.random.RandomState(conf.shuffle_seed).shuffle(names)
    n_val = int(conf.val_size)
    n_train = len(names) - n_val if conf.train_size is None else int(conf.train_size)
    if n_train < 1 or n_val < 0 or n_train + n_val > len(names):
        raise ConfigError(
            f"homographies: train_size={conf.train_size} + val_size={conf.val_size} "
            f"do not fit the {len(names)} images found (train_size: null takes all "
            f"images not used for validation)."
        )
    return {"train": names[:n_train], "val": names[n_train : n_train + n_val]}


class HomographyDataset(BaseDataset):
    default_conf = {
        "data_dir": "revisitop1m",  # under the data root unless absolute; "photos"
        "image_dir": "jpg/",  # under data_dir
        "image_list": "revisitop1m.txt",  # null: glob image_dir
        "glob": ["*.jpg", "*.jpeg", "*.png", "*.JPG", "*.JPEG", "*.PNG"],
        "train_size": 150000,  # null: all images but the validation ones
        "val_size": 2000,
        "val_images": None,  # list of names: fixed validation images (overrides val_size)
        "shuffle_seed": 0,
        "max_image_size": 1024,  # long side of the source before warping; null: keep
        "grayscale": False,
        "right_only": False,
        "triplet": False,
        "skip_unreadable": False,  # True: warn and use the next image of the split
        "items_per_image": 1,  # pairs per image and epoch (small sets: > 1)
        # no effect, accepted for upstream configs: every item is always seeded by
        # (seed, epoch, index), which is what upstream's reseed: true asks for
        "reseed": False,
        "homography": {
            "difficulty": 0.8,
            "translation": 1.0,
            "max_angle": 60,
            "n_angles": 10,
            "min_convexity": 0.05,
            "patch_shape": [640, 480],  # (w, h)
        },
        "photometric": {"name": "dark", "p": None},  # identity | lg | dark
        # false: with load_features, no image is read or warped (the views get no image)
        "read_image": True,
        # cached features of the source images (one HDF5 keyed by image name, from
        # python -m gluefactory.scripts.export_local_features), warped into each view
        "load_features": {
            "do": False,
            "path": None,  # relative to the data root unless absolute
            "data_keys": None,  # null: every stored array
            "thresh": 0.0,  # keep keypoint_scores > thresh (0: all)
            "max_num_keypoints": -1,  # best N after warping (-1: all)
            "force_num_keypoints": False,  # pad to max_num_keypoints (+ keypoint_mask)
        },
    }

    def _init(self, conf):
        photometric = OmegaConf.to_container(conf.photometric)
        unknown = set(photometric) - {"name", "p"}
        if unknown:
            raise ConfigError(
                f"homographies.photometric: unknown key(s) {sorted(unknown)} "
                "(valid: name, p)."
            )
        self.augment = Augmentation(photometric["name"], photometric.get("p"))
        ps = list(conf.homography.patch_shape)
        if int(conf.items_per_image) < 1:
            raise ConfigError(
                f"homographies.items_per_image must be >= 1, got {conf.items_per_image}."
            )
        if len(ps) != 2 or min(ps) < 8:
            raise ConfigError(
                f"homographies.homography.patch_shape must be [w, h], got {ps}."
            )
        lf = conf.load_features
        if lf.do and not lf.path:
            raise ConfigError("homographies: load_features.path must be set.")
        if lf.do and lf.force_num_keypoints and not (lf.max_num_keypoints or 0) > 0:
            raise ConfigError(
                "homographies: load_features.force_num_keypoints needs "
                "load_features.max_num_keypoints > 0."
            )
        if not conf.read_image and not lf.do:
            raise ConfigError(
                "homographies: read_image: false needs cached features (load_features)."
            )
        self.image_dir, self.names = list_images(conf)
        self.splits = split_images(self.names, conf)

    def source_files(self) -> tuple[Path, list[Path]]:
        """The images read (what an evaluation's prediction cache fingerprints)."""
        return self.image_dir, [self.image_dir / n for n in self.names]

    def get_dataset(self, split: str) -> _Split:
        """``train`` / ``val``: the shuffled splits; ``test``: every image found, in
        list or sorted order (the benchmark of an image folder, ``gluefactory.eval.
        homographies``), seeded like ``val`` (epoch 0) with its own stream."""
        if split not in ("train", "val", "test"):
            raise ConfigError(
                f"homographies has splits train, val and test, not {split!r}."
            )
        names = self.names if split == "test" else self.splits[split]
        return _Split(self.conf, self.image_dir, names, split, self.augment)


class _Split(Dataset):
    def __init__(self, conf, image_dir: Path, names: list[str], split: str, augment):
        self.conf, self.image_dir, self.names = conf, image_dir, names
        self.split, self.augment = split, augment
        self.epoch = 0
        self.patch = tuple(int(v) for v in conf.homography.patch_shape)
        self.cache = None
        if conf.load_features.do:
            self.cache = FeatureCache(conf.load_features, EXPORT_HINT, "homographies")

    def __len__(self) -> int:
        return len(self.names) * int(self.conf.items_per_image)

    def set_epoch(self, epoch: int) -> None:
        """Training homographies and augmentations depend on the epoch."""
        self.epoch = int(epoch)

    def sample_new_items(self, seed: int) -> None:
        """Trainer callback ``dataset_callback_fn``: called with ``seed + epoch``."""
        self.set_epoch(int(seed) - int(self.conf.seed))

    def _rng(self, idx: int) -> np.random.Generator:
        epoch = self.epoch if self.split == "train" else 0
        code = _SPLIT_CODE[self.split]
        return np.random.default_rng([int(self.conf.seed), code, epoch, int(idx)])

    def _read(self, idx: int) -> tuple[str, np.ndarray]:
        for k in range(len(self.names)):
            name = self.names[(idx + k) % len(self.names)]
            try:
                return name, read_image(self.image_dir / name)
            except ImageReadError as e:
                if not self.conf.skip_unreadable:
                    raise DataError(
                        f"{e} (set data.skip_unreadable=true to skip such images)"
                    ) from e
                logger.warning("Skipping unreadable image: %s", e)
        raise DataError(f"No readable image in the {self.split} split.")

    def _view(
        self, image: np.ndarray | None, wh: tuple[int, int], rng, difficulty: float
    ) -> dict:
        """One warped view of the (w, h) source ``image`` (None: geometry only; the
        random draws are the same, so are the homographies)."""
        w, h = wh
        hc = self.conf.homography
        H, _ = sample_homography_corners(
            (w, h),
            self.patch,
            difficulty=difficulty,
            translation=hc.translation,
            max_angle=hc.max_angle,
            n_angles=hc.n_angles,
            min_convexity=hc.min_convexity,
            rng=rng,
        )
        seed = int(rng.integers(2**62))
        size = torch.tensor(self.patch, dtype=torch.float32)
        view = {
            "image_size": size,
            "scales": torch.ones(2),
            "original_image_size": size.clone(),
            "H_source": torch.from_numpy(H).float(),
            "source_image_size": torch.tensor([w, h], dtype=torch.float32),
        }
        if image is None:
            return view
        warped = cv2.warpPerspective(
            image,
            homography_to_center_convention(H),
            self.patch,
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )
        img = numpy_image_to_torch(warped)
        img = self.augment(img, seed=seed)
        if self.conf.grayscale:
            from ..utils.image import rgb_to_grayscale

            img = rgb_to_grayscale(img)
        return {"image": img, **view}

    def _source(self, idx: int) -> tuple[str, np.ndarray | None, tuple, dict | None]:
        """(name, image reduced to max_image_size or None, its (w, h), cached features
        in its pixels or None)."""
        feats = None
        if self.cache is not None and not self.conf.read_image:
            name = self.names[idx % len(self.names)]
            feats = self.cache.read(name)
            w0, h0 = (int(v) for v in feats["image_size"])
            image = None
        else:
            name, image = self._read(idx)
            h0, w0 = image.shape[:2]
            if self.cache is not None:
                feats = self.cache.read(name)
                if "image_size" in feats:
                    cw, ch = (int(v) for v in feats["image_size"])
                    if (cw, ch) != (w0, h0):
                        raise DataError(
                            f"homographies: the cached features of {name} are for a "
                            f"{cw}x{ch} image, the file is {w0}x{h0}: re-export them."
                        )
        w, h = w0, h0
        m = self.conf.max_image_size
        if m is not None and max(h0, w0) > int(m):
            s = int(m) / max(h0, w0)
            w, h = round(w0 * s), round(h0 * s)
            if image is not None:
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        if feats is not None:
            scale = torch.tensor([w / w0, h / h0], dtype=torch.float32)
            feats = rescale(feats, scale, ["keypoints"])
        return name, image, (w, h), feats

    def __getitem__(self, idx: int) -> dict:
        if not 0 <= idx < len(self):
            raise IndexError(
                f"homographies: index {idx} out of range ({len(self)} items)."
            )
        name, image, wh, feats = self._source(idx // int(self.conf.items_per_image))
        rng = self._rng(idx)
        d = float(self.conf.homography.difficulty)
        views = [self._view(image, wh, rng, 0.0 if self.conf.right_only else d)]
        views += [
            self._view(image, wh, rng, d) for _ in range(2 if self.conf.triplet else 1)
        ]
        if feats is not None:
            lf = self.conf.load_features
            for i, v in enumerate(views):
                v["cache"] = warp_features(
                    feats, v["H_source"], v["image_size"], f"{name}#{idx}/{i}",
                    lf.thresh, lf.max_num_keypoints, lf.force_num_keypoints,
                )  # fmt: skip
        Hs = [v["H_source"].double() for v in views]
        data = {
            "name": name if self.conf.items_per_image == 1 else f"{name}#{idx}",
            "scene": name,
            "idx": idx,
            **{f"view{i}": v for i, v in enumerate(views)},
            "H_0to1": (Hs[1] @ torch.linalg.inv(Hs[0])).float(),
        }
        if self.conf.triplet:
            data["H_0to2"] = (Hs[2] @ torch.linalg.inv(Hs[0])).float()
            data["H_1to2"] = (Hs[2] @ torch.linalg.inv(Hs[1])).float()
        return data


__main_dataset__ = HomographyDataset
