"""Posed images with optional depth: the text format of MegaDepth-1500 and of user data.

Layout (paths are format strings with ``{scene}``, relative to ``root``)::

    <root>/<scene>/images/<name>          image_dir   (default "{scene}/images")
    <root>/<scene>/depths/<stem>.h5|png   depth_dir   (optional, "{scene}/depths")
    <root>/<scene>/views.txt              views
    <root>/<scene>/pairs.txt              view_groups (optional)

The files are read by :mod:`gluefactory.formats.posed` (``views.txt``: poses and COLMAP
cameras, checked; ``pairs.txt``: one group of 2 or more names per line; without it every
view is an item of its own) and :mod:`gluefactory.formats.depth` (HDF5 dataset
``depth`` or a 16-bit PNG holding depth * 256; 0 means unknown). See docs/datasets.md.

Each item holds ``view0``, ``view1`` (``view2`` ...) with the resized ``image``, the
``camera`` scaled to it, ``T_w2cam``, ``depth`` resized with the formats' one rule
(``nearest-exact``; 0 = unknown), and the relative poses ``T_{i}to{j} = T_j . T_i^-1``
for every ordered pair.
``root: builtin/posed`` is the built-in offline set; ``root: ""`` with
``scene_list: [megadepth1500]`` downloads MegaDepth-1500 on first use.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from ..formats import posed
from ..formats.depth import FORMATS as DEPTH_FORMATS
from ..formats.depth import read_depth, resize_depth
from ..formats.records import View
from ..geometry.wrappers import Camera, Pose
from ..utils.errors import ConfigError, DataError
from ..utils.image import (
    ImagePreprocessor,
    numpy_image_to_torch,
    read_image,
    read_image_size,
)
from .base_dataset import BaseDataset
from .sources.download import archive_for, ensure_archive
from .sources.locate import data_root_dir, refetch_hint, resolve_dataset_dir

logger = logging.getLogger(__name__)


class PosedImages(BaseDataset, torch.utils.data.Dataset):
    """Groups of posed views (pairs, triplets) from ``views.txt``/``pairs.txt`` files.

    Config (upstream key names): ``root`` (relative to the data root, or absolute),
    ``image_dir``, ``depth_dir`` (None: no depth), ``views``, ``view_groups`` (None:
    single views), ``depth_format`` (``h5`` or ``png``), ``scene_list`` (None: every
    sub-folder of ``root``; a list; or a text file under ``root``), ``extra_data`` /
    ``extra_keys`` (per-image values ``name v1 v2 ...`` added to each view under those
    keys), ``preprocessing`` (:class:`ImagePreprocessor`).
    """

    default_conf = {
        "root": None,
        "image_dir": "{scene}/images",
        "depth_dir": "{scene}/depths",
        "views": "{scene}/views.txt",
        "view_groups": "{scene}/pairs.txt",
        "depth_format": "h5",
        "scene_list": None,
        "extra_data": None,
        "extra_keys": [],
        "read_image": True,  # false: sizes and geometry only, no image decoded
        "preprocessing": ImagePreprocessor.default_conf,
    }
    sizes_without_images = True

    def _init(self, conf) -> None:
        if conf.root is None:
            raise ConfigError(
                "posed_images: set data.root (folder of the scenes, relative to the "
                "data root), e.g. builtin/posed."
            )
        if conf.depth_format not in DEPTH_FORMATS:
            raise ConfigError(
                f"posed_images: depth_format must be one of {DEPTH_FORMATS}, got "
                f"{conf.depth_format!r}."
            )
        self.preprocessor = ImagePreprocessor(conf.preprocessing)
        self.root = self._find_root(conf.root)
        self.scenes = self._scene_names(conf.scene_list)
        self.views: dict[str, dict[str, tuple[Pose, Camera]]] = {}
        self.extra: dict[str, dict[str, list]] = {}
        self.items: list[tuple[str, ...]] = []
        self._warned: set = set()
        for scene in self.scenes:
            self._load_scene(scene)
        if not self.items:
            raise DataError(f"posed_images: no item found under {self.root}.")
        logger.info(
            "%s: %d items in %d scenes from %s",
            type(self).__name__,
            len(self.items),
            len(self.scenes),
            self.root,
        )

    # ------------------------------------------------------------------ reading
    def _find_root(self, root) -> Path:
        root = Path(str(root)).expanduser()
        if str(root) in ("", "."):
            return data_root_dir("posed_images")
        return resolve_dataset_dir(root, "posed_images")

    def _scene_names(self, scene_list) -> list[str]:
        if scene_list is None:
            if not self.root.is_dir():
                raise DataError(
                    f"posed_images: data folder {self.root} does not exist."
                )
            scenes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
            if not scenes:
                raise DataError(f"posed_images: no scene folder in {self.root}.")
            return scenes
        if isinstance(scene_list, str):
            path = self.root / scene_list
            if not path.is_file():
                raise DataError(f"posed_images: scene list {path} not found.")
            return [s.strip() for s in path.read_text().splitlines() if s.strip()]
        if OmegaConf.is_list(scene_list) or isinstance(scene_list, (list, tuple)):
            return [str(s) for s in scene_list]
        raise ConfigError(
            f"posed_images: scene_list must be null, a list or a file name, got "
            f"{scene_list!r}."
        )

    def _path(self, template: str, scene: str) -> Path:
        try:
            return self.root / template.format(scene=scene)
        except (KeyError, IndexError, ValueError) as e:
            raise ConfigError(
                f"posed_images: path template {template!r} may only use {{scene}} ({e})."
            ) from None

    def image_path(self, scene: str, name: str) -> Path:
        return self._path(self.conf.image_dir, scene) / name

    def depth_path(self, scene: str, name: str) -> Path:
        depth = posed.depth_name(name, self.conf.depth_format)
        return self._path(self.conf.depth_dir, scene) / depth

    def _load_scene(self, scene: str) -> None:
        scene_dir = self.root / scene
        if not scene_dir.exists():
            spec = archive_for(scene_dir)
            if spec is not None:
                ensure_archive(spec.name)
        records, groups = self.read_scene(scene)
        views = {name: (v.pose(), v.camera().float()) for name, v in records.items()}
        missing = [n for n in views if not self.image_path(scene, n).is_file()]
        if self.conf.depth_dir:
            missing += [
                str(self.depth_path(scene, n))
                for n in views
                if not self.depth_path(scene, n).is_file()
            ]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DataError(
                f"posed_images: scene {scene!r} under {self.root} is incomplete: "
                f"{len(missing)} image/depth file(s) missing ({shown}).{refetch_hint(scene_dir)}"
            )
        self.views[scene] = views
        if self.conf.extra_data:
            self.extra[scene] = self._read_extra(scene)
        if groups is None:
            self.items += [(scene, n) for n in views]
            return
        self.items += [(scene, *names) for names in groups]

    def read_scene(self, scene: str) -> tuple[dict[str, View], list[tuple] | None]:
        """The views of a scene and its groups (None: every view is an item)."""
        views = posed.read_views(self._path(self.conf.views, scene))
        if self.conf.view_groups is None:
            return views, None
        return views, posed.read_groups(self._path(self.conf.view_groups, scene), views)

    def scene_files(self, scene: str) -> list[Path]:
        """The files of a scene other than images and depths (poses, groups)."""
        return [
            self._path(self.conf[key], scene)
            for key in ("views", "view_groups", "extra_data")
            if self.conf[key]
        ]

    def _read_extra(self, scene: str) -> dict[str, list]:
        path = self._path(self.conf.extra_data, scene)
        if not path.is_file():
            raise DataError(f"posed_images: extra data file {path} not found.")
        out = {}
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                values = [ast.literal_eval(v) for v in fields[1:]]
            except (ValueError, SyntaxError) as e:
                raise DataError(f"{path}:{lineno}: {e}") from None
            if len(values) != len(self.conf.extra_keys):
                raise DataError(
                    f"{path}:{lineno}: {len(values)} values for extra_keys "
                    f"{list(self.conf.extra_keys)}."
                )
            out[fields[0]] = values
        return out

    # -------------------------------------------------------------------- items
    def get_dataset(self, split: str) -> PosedImages:
        return self

    def source_files(self) -> tuple[Path, list[Path]]:
        """Every file read: per scene its views (poses), groups and extra files, and
        the image (and depth) of each view."""
        files = []
        for scene, views in self.views.items():
            files += self.scene_files(scene)
            for name in views:
                files.append(self.image_path(scene, name))
                if self.conf.depth_dir:
                    files.append(self.depth_path(scene, name))
        return self.root, files

    def __len__(self) -> int:
        return len(self.items)

    def image_preprocessor(self, w: int, h: int) -> ImagePreprocessor:
        """The preprocessor of an image of size (w, h) (here: the configured one)."""
        return self.preprocessor

    def _resize_depth(self, depth: torch.Tensor, view: dict) -> torch.Tensor:
        """The depth map (any size of the image's aspect ratio) at the size of the
        view's resized image (same crop and padding)."""
        cw, ch = (int(x) for x in view["image_size"].tolist())
        ow, oh = (int(x) for x in view["original_image_size"].tolist())
        pre = self.image_preprocessor(ow, oh)
        out_h, out_w = (max(ch, cw),) * 2 if pre.conf.square_pad else (ch, cw)
        depth = resize_depth(depth, pre.target_size(oh, ow))
        depth = depth[:ch, :cw]  # divisible_by crop
        return F.pad(depth, (0, out_w - cw, 0, out_h - ch))  # square_pad

    def _camera_for_image(self, camera: Camera, w: int, h: int, path, scene) -> Camera:
        """The camera of the image as stored: rescaled if views.txt has another size of
        the same aspect ratio (e.g. the calibration of a downscaled copy)."""
        cw, ch = camera.size.tolist()
        if (cw, ch) == (w, h):
            return camera
        views = self._path(self.conf.views, scene)
        if abs(w / cw - h / ch) > max(1 / cw, 1 / ch):
            raise DataError(
                f"Image {path} is {w}x{h} but its camera in {views} is "
                f"{int(cw)}x{int(ch)} (another aspect ratio)."
            )
        if (scene, "size") not in self._warned:
            self._warned.add((scene, "size"))
            logger.warning(
                "posed_images: cameras in %s are for %dx%d images, %s is %dx%d: "
                "scaling the cameras to the image files.",
                views,
                cw,
                ch,
                path.name,
                w,
                h,
            )
        return camera.scale(torch.tensor([w / cw, h / ch]))

    def depth_size(self, w: int, h: int) -> tuple[int, int] | None:
        """The size (w, h) the depth map of a (w, h) image must have (None: any)."""
        return (w, h)

    def _read_view(self, scene: str, name: str) -> dict:
        pose, camera = self.views[scene][name]
        path = self.image_path(scene, name)
        if self.conf.read_image:
            image = read_image(path, grayscale=False)
            h, w = image.shape[:2]
            view = self.image_preprocessor(w, h)(numpy_image_to_torch(image))
        else:
            w, h = read_image_size(path)
            view = self.image_preprocessor(w, h).sizes(h, w)
        camera = self._camera_for_image(camera, w, h, path, scene)
        view["camera"] = camera.scale(view["scales"])
        view["T_w2cam"] = pose.float()
        view["name"] = f"{scene}/{name}"
        if self.conf.depth_dir:
            dpath = self.depth_path(scene, name)
            depth = torch.from_numpy(read_depth(dpath, self.depth_size(w, h)))
            view["depth"] = self._resize_depth(depth, view)
        if self.conf.extra_data:
            values = self.extra[scene].get(name)
            if values is None:
                raise DataError(
                    f"posed_images: no extra data for {name!r} in "
                    f"{self._path(self.conf.extra_data, scene)}."
                )
            view.update(dict(zip(self.conf.extra_keys, values)))
        return view

    def __getitem__(self, index: int) -> dict:
        scene, *names = self.items[index]
        data = {
            "name": "/".join([scene] + [n.replace("/", "-") for n in names]),
            "scene": scene,
            "nviews": len(names),
        }
        for i, name in enumerate(names):
            data[f"view{i}"] = self._read_view(scene, name)
        poses = [self.views[scene][n][0] for n in names]  # float64
        for i, Ti in enumerate(poses):
            for j, Tj in enumerate(poses):
                if i != j:
                    data[f"T_{i}to{j}"] = (Tj @ Ti.inv()).float()
        return data
