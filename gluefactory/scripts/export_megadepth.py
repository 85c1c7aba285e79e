"""Export local features of MegaDepth images, to train matchers without extracting.

    python -m gluefactory.scripts.export_megadepth --method sp [--num_workers 8]
        [--scenes FILE] [--export_sparse_depth] [--overwrite]
        [model.max_num_keypoints=2048] [data.preprocessing.resize=1024] [data.data_dir=...]

Reads the images with the ``megadepth`` dataset (``views: 1``, long side resized to
1024, not padded), extracts with a named preset (``--method``, :data:`METHODS`;
``model.*`` overrides its extractor config, ``data.*`` the dataset's) and writes one HDF5
file per scene::

    <GLUEFACTORY_DATA>/exports/megadepth-undist-depth-r1024_<NAME>/<scene>.h5
    <GLUEFACTORY_DATA>/exports/megadepth-undist-depth-r1024_<NAME>/export.json

(a feature file, :mod:`gluefactory.formats.features`; keys and units:
:mod:`gluefactory.datasets.feature_cache`; keypoints in
original-image pixels, the rest float16). With ``--export_sparse_depth`` every keypoint
also gets its depth, sampled in the original depth map (bilinear, nearest next to holes,
as the depth ground truth does), so that training reads no depth map. Each scene file is
written atomically and tagged with a hash of the export config: a rerun skips the scenes
already done (resume), and a scene file made with another config is an error unless
``--overwrite`` (which re-exports it). ``export.json`` (method, configs, hash) is written
last, once every scene file carries its hash. Train from the export with ``data.load_features.do
=true data.read_image=false model.allow_no_extract=true`` (docs/training-data.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import settings
from ..datasets.feature_cache import SIZE_KEYS
from ..datasets.megadepth import MegaDepth, read_scene_list
from ..eval.results import config_hash
from ..formats.features import FeatureWriter, export_hash_of, is_complete
from ..geometry.depth import sample_depth
from ..models import get_model
from ..utils.cli import main_wrapper
from ..utils.conf import as_plain, parse_dotlist
from ..utils.errors import ConfigError, DataError
from ..utils.fs import atomic_write_text, remove_stale_temporaries
from ..utils.tensor import collate

logger = logging.getLogger(__name__)
PROG = "python -m gluefactory.scripts.export_megadepth"
FORMAT_VERSION = 1

#: --method -> (folder name, with {k} = max_num_keypoints; extractor config). The
#: extractor configs are those of the shipped MegaDepth training configs, without the
#: padding (it is done when the cache is loaded).
METHODS: dict[str, tuple[str, dict]] = {
    "sp": (
        "SP-k{k}-nms3",
        {"name": "gluefactory_nonfree.superpoint", "nms_radius": 3,
         "detection_threshold": 0.0},
    ),
    "sp_open": (
        "SP-open-k{k}-nms3",
        {"name": "extractors.superpoint_open", "nms_radius": 3,
         "detection_threshold": -1},
    ),
    "cv2-sift": (
        "opencv-SIFT-k{k}",
        {"name": "extractors.sift", "backend": "opencv", "nms_radius": 3,
         "detection_threshold": 0.0},
    ),
    "pycolmap-sift": (
        "pycolmap-SIFT-k{k}",
        {"name": "extractors.sift", "backend": "pycolmap", "nms_radius": 3,
         "detection_threshold": 0.0},
    ),
    "disk": ("DISK-k{k}", {"name": "extractors.disk", "detection_threshold": 0.0}),
    "aliked": (
        "ALIKED-k{k}-n16",
        {"name": "extractors.aliked", "model_name": "aliked-n16",
         "detection_threshold": 0.0},
    ),
    "pycolmap-sift-gpu": (
        "pycolmap_SIFTGPU-nms3-fixed-k{k}",
        {"name": "extractors.sift", "backend": "pycolmap_cuda", "nms_radius": 3,
         "detection_threshold": 0.0},
    ),
    "xfeat": ("XFeat-k{k}", {"name": "extractors.xfeat", "detection_threshold": 0.0}),
}  # fmt: skip
#: upstream's presets that this release does not ship, and why (a clear error instead
#: of argparse's "invalid choice")
UNAVAILABLE_METHODS = {
    "keynet-affnet-hardnet": "KeyNet-AffNet-HardNet is not implemented here (its "
    "official weights are hosted outside PyPI, so it could not be checked against the "
    "reference); export with another --method, e.g. cv2-sift or aliked",
}
METHOD_CHOICES = sorted({*METHODS, *UNAVAILABLE_METHODS})
NUM_KEYPOINTS = 2048
RESIZE = 1024
#: the dataset config of the export (``data.*`` overrides it)
DATA_CONF = {
    "data_dir": "megadepth",
    "preprocessing": {"resize": RESIZE, "side": "long", "square_pad": False},
}
#: the dataset keys the exporter sets itself (p_rotate: features are exported upright,
#: training turns them with their image)
FORCED_DATA = (
    "views",
    "train_split",
    "train_num_per_scene",
    "read_image",
    "read_depth",
    "load_features",
    "p_rotate",
)
FLOAT16_KEYS = ("keypoint_scores", "descriptors", "scales", "oris", "depth_keypoints")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = exporter_parser(PROG, __doc__, "scenes")
    parser.add_argument(
        "--scenes",
        default=None,
        help="File with one scene per line (absolute, relative to the MegaDepth "
        "folder, or a shipped list name); default: every scene in scene_info/.",
    )
    parser.add_argument(
        "--export_sparse_depth",
        action="store_true",
        help="Also store the depth (and its validity) at every keypoint.",
    )
    return parser.parse_intermixed_args(argv)


def exporter_parser(prog: str, doc: str | None, what: str) -> argparse.ArgumentParser:
    """The command line every feature exporter starts from: --method, --num_workers,
    --overwrite (of ``what``), --device and the overrides."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="sp", choices=METHOD_CHOICES)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"Re-export {what} exported with another configuration.",
    )
    parser.add_argument("--device", default=None, help="Default: cuda if available.")
    parser.add_argument(
        "dotlist", nargs="*", help="Overrides: model.<extractor key>=, data.<key>=."
    )
    return parser


def method_preset(method: str) -> tuple[str, dict]:
    """(folder name format, extractor config) of ``--method``; a ConfigError for one of
    upstream's presets that this release does not ship."""
    if method in UNAVAILABLE_METHODS:
        raise ConfigError(f"--method {method}: {UNAVAILABLE_METHODS[method]}.")
    return METHODS[method]


def extractor_conf(method: str, user: Any = None) -> dict:
    """The merged, validated extractor config of a preset (``model.*`` overrides)."""
    _, preset = method_preset(method)
    model = OmegaConf.merge({"max_num_keypoints": NUM_KEYPOINTS, **preset}, user or {})
    cls = get_model(model.name)
    return as_plain(cls.build_conf(model))  # unknown keys -> ConfigError


def split_overrides(prog: str, dotlist: list[str], dataset: str) -> tuple[Any, Any]:
    """The ``model.*`` and ``data.*`` overrides of an exporter's command line (the
    only two sections it takes; any other is a ConfigError naming it)."""
    user = parse_dotlist(dotlist) if dotlist else OmegaConf.create({})
    bad = [str(k) for k in user.keys() if k not in ("model", "data")]
    if bad:
        raise ConfigError(
            f"{prog}: unknown override section(s) {', '.join(bad)}; use model.<key> "
            f"(the extractor) or data.<key> (the {dataset} dataset)."
        )
    return user.get("model"), user.get("data") or OmegaConf.create({})


def build_conf(method: str, dotlist: list[str]) -> tuple[dict, dict]:
    """(extractor config, megadepth dataset config), user overrides checked strictly."""
    model_user, data_user = split_overrides(PROG, dotlist, "megadepth")
    model = extractor_conf(method, model_user)
    forced = [k for k in FORCED_DATA if k in data_user]
    if forced:
        raise ConfigError(
            f"{PROG}: data.{forced[0]} is set by the exporter (use --scenes / "
            "--export_sparse_depth)."
        )
    data = as_plain(MegaDepth.build_conf(OmegaConf.merge(DATA_CONF, data_user)))
    return model, data


def export_name(method: str, model: dict, data: dict) -> str:
    fmt, _ = method_preset(method)
    name = fmt.format(k=model.get("max_num_keypoints"))
    return f"megadepth-undist-depth-r{data['preprocessing']['resize']}_{name}"


def default_scenes(root: Path, info_dir: str) -> list[str]:
    folder = root / info_dir
    scenes = sorted(p.stem for p in folder.glob("*.npz"))
    if not scenes:
        raise DataError(f"{PROG}: no scene_info/*.npz in {folder}.")
    return scenes


def resolve_scenes(value: str | None, root: Path, info_dir: str) -> list[str]:
    if value is None:
        return default_scenes(root, info_dir)
    path = Path(value).expanduser()
    if not path.is_absolute() and not path.exists() and (root / path).is_file():
        path = root / path
    scenes = read_scene_list(str(path) if path.is_file() else value)
    if not scenes:
        raise ConfigError(f"{PROG}: the scene list {value} is empty.")
    return scenes


class _Images(Dataset):
    """The images of one scene: the dataset's view (+ the original depth map)."""

    def __init__(self, split, sparse_depth: bool):
        self.split, self.sparse_depth = split, sparse_depth

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, k: int) -> dict:
        item = self.split[k]
        if self.sparse_depth:
            scene, idx = self.split.items[k]
            w, h = (int(v) for v in item["original_image_size"])
            item["depth_original"] = self.split.read_depth_map(
                self.split.depth_path(scene, int(idx)), (h, w)
            )
        return item


def features_of(item: dict, pred: dict, sparse_depth: bool) -> dict[str, np.ndarray]:
    """One image's arrays as stored: batch removed, keypoints in original pixels."""
    scales = item["scales"][0]
    out = {}
    for k, v in pred.items():
        if k == "keypoint_mask" or not isinstance(v, torch.Tensor):
            continue
        v = v[0].detach().float().cpu()
        if k == "keypoints":
            v = v / scales  # x_original = x_resized / scale
        elif k in SIZE_KEYS:  # SIFT's scale (pixels)
            v = v / scales.mean()
        out[k] = v
    if sparse_depth:
        d, valid = sample_depth(out["keypoints"], item["depth_original"][0])
        out["depth_keypoints"], out["valid_depth_keypoints"] = d, valid
    arrays = {}
    for k, v in out.items():
        a = v.numpy()
        if k in FLOAT16_KEYS:
            a = a.astype(np.float16)
        arrays[k] = a
    arrays["image_size"] = item["original_image_size"][0].numpy().astype(np.float32)
    return arrays


def export_scene(
    scene: str,
    data_conf: dict,
    model: torch.nn.Module,
    path: Path,
    export_hash: str,
    sparse_depth: bool,
    num_workers: int,
    device: str,
) -> int:
    """Write ``path`` (atomically) with the features of every image of ``scene``."""
    conf = {
        **data_conf, "views": 1, "train_split": [scene], "train_num_per_scene": None,
        "read_image": True,
        "read_depth": False, "num_workers": num_workers, "batch_size": 1,
    }  # fmt: skip
    split = MegaDepth(conf).get_dataset("train")
    loader = DataLoader(
        _Images(split, sparse_depth),
        batch_size=1,
        num_workers=num_workers,
        collate_fn=collate,
    )
    n = 0
    with FeatureWriter(path, export_hash) as writer:
        for item in tqdm(loader, desc=scene, unit="img", leave=False):
            view = {"image": item["image"].to(device)}
            with torch.no_grad():
                pred = model(view)
            name = Path(item["name"][0]).name
            writer.write(name, features_of(item, pred, sparse_depth))
            n += 1
    return n


def scene_images(data_conf: dict, scene: str) -> list[str]:
    """Names of the images of a scene the dataset uses (with image and depth)."""
    conf = {
        **data_conf, "views": 1, "train_split": [scene], "train_num_per_scene": None,
        "read_depth": False,
    }  # fmt: skip
    split = MegaDepth(conf).get_dataset("train")
    info = split.scenes[scene]
    return [Path(str(info.image_paths[i])).name for i in info.valid]


def run(args: argparse.Namespace) -> dict:
    model_conf, data_conf = build_conf(args.method, list(args.dotlist or []))
    name = export_name(args.method, model_conf, data_conf)
    out_dir = settings.data_root() / "exports" / name
    probe = MegaDepth({**data_conf, "views": 1, "train_split": []})
    scenes = resolve_scenes(args.scenes, probe.root, data_conf["info_dir"])
    spec = {
        "format": FORMAT_VERSION,
        "method": args.method,
        "extractor": model_conf,
        "preprocessing": data_conf["preprocessing"],
        "grayscale": data_conf["grayscale"],
        "sparse_depth": bool(args.export_sparse_depth),
    }
    export_hash = config_hash(spec)
    remove_stale_temporaries(out_dir)
    todo, done = [], []
    for scene in scenes:
        path = out_dir / f"{scene}.h5"
        if is_complete(path, export_hash, scene_images(data_conf, scene)):
            done.append(scene)
            continue
        old = export_hash_of(path)
        if old is not None and old != export_hash and not args.overwrite:
            raise ConfigError(
                f"{path} was exported with another configuration (hash {old}, this "
                f"run {export_hash}; see {out_dir / 'export.json'}). Rerun with "
                "--overwrite to re-export it, or change the method / overrides."
            )
        todo.append(scene)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    images = 0
    if todo:
        model = get_model(model_conf["name"])(model_conf).eval().to(device)
        out_dir.mkdir(parents=True, exist_ok=True)
        for scene in tqdm(todo, desc="scenes", unit="scene"):
            images += export_scene(
                scene, data_conf, model, out_dir / f"{scene}.h5", export_hash,
                args.export_sparse_depth, args.num_workers, device,
            )  # fmt: skip
    # written last: it describes the scene files only once they all carry its hash
    spec_text = json.dumps({**spec, "hash": export_hash}, indent=2) + "\n"
    info = out_dir / "export.json"
    if scenes and (not info.is_file() or info.read_text() != spec_text):
        atomic_write_text(info, spec_text)
    dt = time.time() - t0
    summary = {
        "folder": str(out_dir),
        "exported": todo,
        "skipped": done,
        "images": images,
        "seconds": dt,
    }
    print(
        f"{PROG}: exported {len(todo)} scene(s) ({images} images, "
        f"{images / dt if dt > 0 and images else 0:.1f} img/s), skipped {len(done)} "
        f"already done, in {out_dir}"
    )
    return summary


@main_wrapper
def main(argv: list[str] | None = None) -> dict:
    return run(parse_args(argv))


if __name__ == "__main__":
    main()
