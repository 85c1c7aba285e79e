"""HPatches sequences for homography evaluation (facts 3.1).

Layout (read by :mod:`gluefactory.formats.hpatches`): ``<data_dir>/<seq>/{1..6}.ppm``
and ``H_1_2 .. H_1_6`` (3 x 3, whitespace separated), 116 sequences ``i_*``
(illumination) and ``v_*`` (viewpoint). Each sequence gives the pairs 1->2 .. 1->6. By default the eight large-image sequences are skipped
(108 sequences, 540 pairs) and images are resized so that their *short side is 480*.

**Homography convention.** The HPatches files map coordinates whose pixel centres are at
integers (OpenCV's convention). The library puts pixel centres at +0.5 (see
:mod:`gluefactory.geometry.coordinates`), so each file's H is converted once, here:
``H' = S1 . T(+0.5) . H . T(-0.5) . S0^-1`` with ``T(d)`` the translation by (d, d) and
``S = diag(sx, sy, 1)`` the resize of each image. ``H_0to1`` of an item maps pixels of
the resized view 0 to the resized view 1 in the library convention.

Where the folder is missing, the official archive is downloaded on first use (see
:mod:`gluefactory.datasets.sources.download`); ``data_dir: builtin/hpatches`` is the built-in
offline set (:mod:`gluefactory.datasets.sources.builtin`), built on first use.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..formats.hpatches import (
    NUM_IMAGES,
    homography_name,
    image_name,
    missing_files,
    read_homography,
)
from ..geometry.homography import (
    homography_from_center_convention,
    rescale_homography,
)
from ..utils.errors import ConfigError, DataError
from ..utils.image import (
    ImagePreprocessor,
    numpy_image_to_torch,
    read_image,
    read_image_size,
)
from .base_dataset import BaseDataset
from .sources.locate import refetch_hint, resolve_dataset_dir

logger = logging.getLogger(__name__)

#: sequences with very large images, excluded by the usual protocol
IGNORED_SCENES = (
    "i_contruction",
    "i_crownnight",
    "i_dc",
    "i_pencils",
    "i_whitebuilding",
    "v_artisans",
    "v_astronautis",
    "v_talent",
)


class HPatches(BaseDataset, torch.utils.data.Dataset):
    """HPatches pairs 1->k (k = 2..6) with ``H_0to1`` in resized pixels, +0.5 convention.

    Config (upstream key names):
    - ``data_dir``: folder of the sequences, relative to the data root (or absolute);
      ``builtin/hpatches`` is the built-in offline set;
    - ``subset``: None (all), ``"i"`` (illumination) or ``"v"`` (viewpoint);
    - ``ignore_large_images``: skip the 8 large-image sequences (protocol default);
    - ``grayscale``: load images as one channel;
    - ``read_image``: false: no image is decoded, the views carry their sizes (from the
      file headers) and the geometry only (the evaluation's metrics loop);
    - ``preprocessing``: :class:`ImagePreprocessor` (default: short side 480).
    """

    sizes_without_images = True

    default_conf = {
        "data_dir": "hpatches-sequences-release",
        "subset": None,
        "ignore_large_images": True,
        "grayscale": False,
        "read_image": True,
        "preprocessing": {
            **ImagePreprocessor.default_conf,
            "resize": 480,
            "side": "short",
        },
    }

    def _init(self, conf) -> None:
        if conf.subset not in (None, "i", "v"):
            raise ConfigError(
                f"hpatches: subset must be null, 'i' or 'v', got {conf.subset!r}."
            )
        for split in ("batch_size", "val_batch_size", "test_batch_size"):
            if conf.get(split) not in (None, 1):
                raise ConfigError(
                    f"hpatches: {split} must be 1 (image sizes differ), got "
                    f"{conf.get(split)}."
                )
        self.preprocessor = ImagePreprocessor(conf.preprocessing)
        self.root = resolve_dataset_dir(conf.data_dir, "hpatches")
        hint = refetch_hint(self.root)
        sequences = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not sequences:
            raise DataError(
                f"No HPatches sequence folders in {self.root}; expected "
                f"<seq>/{{1..6}}.ppm and H_1_{{2..6}}.{hint}"
            )
        self.sequences = []
        for seq in sequences:
            if conf.ignore_large_images and seq in IGNORED_SCENES:
                continue
            if conf.subset is not None and not seq.startswith(conf.subset + "_"):
                continue
            missing = missing_files(self.root / seq)
            if missing:
                raise DataError(
                    f"HPatches sequence {self.root / seq} is incomplete: missing "
                    f"{', '.join(missing)}.{hint}"
                )
            self.sequences.append(seq)
        if not self.sequences:
            raise DataError(
                f"No HPatches sequence in {self.root} matches subset={conf.subset!r}."
            )
        self.items = [
            (seq, k) for seq in self.sequences for k in range(2, NUM_IMAGES + 1)
        ]
        logger.info(
            "HPatches: %d sequences, %d pairs from %s",
            len(self.sequences),
            len(self.items),
            self.root,
        )

    def get_dataset(self, split: str) -> HPatches:
        return self

    def source_files(self) -> tuple[Path, list[Path]]:
        return self.root, [self.root / seq for seq in self.sequences]

    def __len__(self) -> int:
        return len(self.items)

    def _read_view(self, seq: str, idx: int) -> dict:
        path = self.root / seq / image_name(idx)
        if self.conf.read_image:
            image = read_image(path, grayscale=self.conf.grayscale)
            data = self.preprocessor(numpy_image_to_torch(image))
        else:
            w, h = read_image_size(path)
            data = self.preprocessor.sizes(h, w)
        data["name"] = f"{seq}/{image_name(idx)}"
        return data

    def __getitem__(self, index: int) -> dict:
        seq, k = self.items[index]
        view0 = self._read_view(seq, 1)
        view1 = self._read_view(seq, k)
        H = homography_from_center_convention(
            read_homography(self.root / seq / homography_name(k))
        )
        H = rescale_homography(
            torch.from_numpy(H),
            view0["scales"].double(),
            view1["scales"].double(),
        )
        return {
            "name": f"{seq}/1-{k}",
            "scene": seq,
            "idx": index,
            "is_illu": seq.startswith("i_"),
            "view0": view0,
            "view1": view1,
            "H_0to1": H.float(),
        }
