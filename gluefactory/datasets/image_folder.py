"""A plain folder, glob or list of images, preprocessed: input of feature exports.

``images`` is one of:

- a folder: every file in it (recursively) matching one of ``glob``, sorted;
- a glob pattern (``/photos/**/*.jpg``);
- a text file (``.txt``) with one image path per line, relative to the file's folder
  unless absolute (``#`` comments and blank lines are skipped);
- a list of paths.

Relative ``images`` are resolved against the data root (``$GLUEFACTORY_DATA``). Each
item has ``name`` (the path relative to the common root, unique), ``image`` (3 x H x W,
or 1 x H x W with ``preprocessing.grayscale``), ``image_size`` (w, h after resize),
``scales`` (sx, sy) and ``original_image_size``: keypoints found on the image map back
to the original file with ``kpts / scales`` (library convention). Every split is the
whole set.
"""

from __future__ import annotations

import glob as globlib
import os
from pathlib import Path

from omegaconf import OmegaConf
from torch.utils.data import Dataset

from .. import settings
from ..utils.errors import ConfigError, DataError
from ..utils.image import IMAGE_SUFFIXES, ImagePreprocessor
from .base_dataset import BaseDataset


def _resolve(p: str) -> Path:
    path = Path(str(p)).expanduser()
    return path if path.is_absolute() else settings.data_root() / path


def collect_images(images, patterns) -> tuple[Path, list[str]]:
    """(root, relative names) of the images described by ``images`` (module doc)."""
    if images is None:
        raise ConfigError(
            "image_folder: set `images` (a folder, glob, list file or list)."
        )
    if OmegaConf.is_list(images) or isinstance(images, (list, tuple)):
        paths = [_resolve(p) for p in images]
        source = "the images list"
    else:
        spec = str(images)
        path = _resolve(spec)
        if any(c in spec for c in "*?["):
            pattern = spec if Path(spec).expanduser().is_absolute() else str(path)
            paths = sorted(Path(p) for p in globlib.glob(pattern, recursive=True))
            paths = [p for p in paths if p.is_file()]
            source = f"glob {pattern}"
        elif path.is_dir():
            found = {p for pat in patterns for p in path.rglob(pat) if p.is_file()}
            paths = sorted(found)
            source = f"folder {path} (patterns {list(patterns)})"
        elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
            lines = [ln.strip() for ln in path.read_text().splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
            paths = [
                Path(ln) if Path(ln).is_absolute() else path.parent / ln for ln in lines
            ]
            source = f"list file {path}"
        elif path.is_file():
            paths, source = [path], str(path)
        else:
            raise DataError(f"image_folder: {path} does not exist.")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise DataError(
            f"image_folder: images of {source} not found: {', '.join(missing[:3])}{more}."
        )
    if not paths:
        raise DataError(f"image_folder: no images in {source}.")
    paths = list(dict.fromkeys(p.resolve() for p in paths))
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return root, [str(p.relative_to(root)) for p in paths]


class ImageFolder(BaseDataset):
    default_conf = {
        "images": None,
        "glob": [
            "*.jpg",
            "*.jpeg",
            "*.png",
            "*.JPG",
            "*.JPEG",
            "*.PNG",
            "*.ppm",
            "*.pgm",
        ],
        "preprocessing": ImagePreprocessor.default_conf,
    }

    def _init(self, conf):
        self.root, self.names = collect_images(conf.images, conf.glob)
        self.preprocessor = ImagePreprocessor(conf.preprocessing)

    def get_dataset(self, split: str) -> _Images:
        return _Images(self.root, self.names, self.preprocessor)


class _Images(Dataset):
    def __init__(self, root: Path, names: list[str], pre: ImagePreprocessor):
        self.root, self.names, self.pre = root, names, pre

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, idx: int) -> dict:
        name = self.names[idx]
        return {"name": name, **self.pre.load(self.root / name)}


__main_dataset__ = ImageFolder
