"""Export local features of a folder of images, e.g. for homography pre-training.

    python -m gluefactory.scripts.export_local_features --method xfeat \\
        --images revisitop1m/jpg [--output FILE] [--num_workers 8] [--overwrite] \\
        [model.max_num_keypoints=2048] [data.preprocessing.resize=1024]

Reads the images with the ``image_folder`` dataset (``--images``: a folder, glob or
list file, relative to the data root unless absolute; long side resized to 1024),
extracts with a preset of ``export_megadepth`` (``--method``; ``model.*`` overrides the
extractor, ``data.*`` the image_folder dataset) and writes ONE HDF5 file keyed by the
image path relative to the ``--images`` folder (the names the ``homographies`` dataset
uses), default ``<GLUEFACTORY_DATA>/exports/<folder>-r1024_<NAME>.h5``. Same layout
(keypoints in original pixels), atomic write, resume and ``--overwrite`` rules as
``export_megadepth``. Train with ``data.load_features.do=true
data.load_features.path=<that file> model.allow_no_extract=true`` (homographies; see
docs/training-data.md).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import settings
from ..datasets.image_folder import ImageFolder
from ..eval.results import config_hash
from ..formats.features import FeatureWriter, export_hash_of, is_complete
from ..models import get_model
from ..utils.cli import main_wrapper
from ..utils.conf import as_plain
from ..utils.errors import ConfigError
from ..utils.fs import check_output_file, remove_stale_temporaries
from ..utils.tensor import collate
from .export_megadepth import (
    FORMAT_VERSION,
    RESIZE,
    exporter_parser,
    extractor_conf,
    method_preset,
    split_overrides,
)
from .export_megadepth import features_of as _features_of

PROG = "python -m gluefactory.scripts.export_local_features"
DATA_CONF = {"preprocessing": {"resize": RESIZE, "side": "long"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = exporter_parser(PROG, __doc__, "a file")
    parser.add_argument(
        "--images", required=True, help="Folder, glob or list file of images."
    )
    parser.add_argument("--output", default=None, help="HDF5 file to write.")
    return parser.parse_intermixed_args(argv)


def build_conf(method: str, images: str, dotlist: list[str]) -> tuple[dict, dict]:
    """(extractor config, image_folder dataset config), checked strictly."""
    model_user, data_user = split_overrides(PROG, dotlist, "image_folder")
    model = extractor_conf(method, model_user)
    if "images" in data_user:
        raise ConfigError(f"{PROG}: give the images with --images, not data.images.")
    data = OmegaConf.merge(DATA_CONF, data_user, {"images": images})
    return model, as_plain(ImageFolder.build_conf(data))


def _names_relative_to(images: str, root: Path, names: list[str]) -> list[str]:
    """Names relative to the ``--images`` folder (the homographies dataset's names)."""
    folder = Path(images).expanduser()
    folder = folder if folder.is_absolute() else settings.data_root() / folder
    if not folder.is_dir():
        return names
    folder = folder.resolve()
    return [str((root / n).resolve().relative_to(folder)) for n in names]


def run(args: argparse.Namespace) -> dict:
    model_conf, data_conf = build_conf(args.method, args.images, list(args.dotlist))
    if args.output:  # checked before the images are listed and the model built
        path = Path(args.output).expanduser()
        path = path if path.is_absolute() else settings.data_root() / path
        check_output_file(path, "--output", ".h5")
    dataset = ImageFolder(data_conf)
    names = _names_relative_to(args.images, dataset.root, dataset.names)
    fmt, _ = method_preset(args.method)
    tag = fmt.format(k=model_conf.get("max_num_keypoints"))
    resize = data_conf["preprocessing"]["resize"]
    if not args.output:
        stem = Path(str(args.images).rstrip("/*")).name or "images"
        path = settings.data_root() / "exports" / f"{stem}-r{resize}_{tag}.h5"
        check_output_file(path, "The export", ".h5")
    spec = {
        "format": FORMAT_VERSION,
        "method": args.method,
        "extractor": model_conf,
        "preprocessing": data_conf["preprocessing"],
    }
    export_hash = config_hash(spec)
    remove_stale_temporaries(path.parent)
    if is_complete(path, export_hash, names):
        print(f"{PROG}: {path} is complete ({len(names)} images), nothing to do.")
        return {"path": str(path), "images": 0, "skipped": True}
    old = export_hash_of(path)
    if old is not None and old != export_hash and not args.overwrite:
        raise ConfigError(
            f"{path} was exported with another configuration (hash {old}, this run "
            f"{export_hash}). Rerun with --overwrite to re-export it, or pass --output."
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = get_model(model_conf["name"])(model_conf).eval().to(device)
    loader = DataLoader(
        dataset.get_dataset("train"),
        batch_size=1,
        num_workers=args.num_workers,
        collate_fn=collate,
    )
    t0 = time.time()
    with FeatureWriter(path, export_hash) as writer:
        for k, item in enumerate(tqdm(loader, desc="images", unit="img")):
            with torch.no_grad():
                pred = model({"image": item["image"].to(device)})
            writer.write(names[k], _features_of(item, pred, False))
    dt = time.time() - t0
    print(
        f"{PROG}: exported {len(names)} images ({len(names) / max(dt, 1e-9):.1f} img/s) "
        f"to {path}"
    )
    return {"path": str(path), "images": len(names), "skipped": False}


@main_wrapper
def main(argv: list[str] | None = None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
