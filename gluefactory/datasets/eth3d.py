"""ETH3D undistorted pairs with depth: the data of the ETH3D line and point benchmark.

Layout (:mod:`gluefactory.formats.eth3d`)::

    <root>/<scene>/images/dslr_images_undistorted/<name>
    <root>/<scene>/ground_truth_depth/undistorted_depth/<stem>.png
    <root>/<scene>/dslr_calibration_undistorted/{cameras.txt, images.txt}

Upstream glue-factory's protocol: every pair of views of a scene that observes at least
``min_covisibility`` (500) common 3D points (COLMAP ``POINT3D_ID``s of ``images.txt``),
in the order of the sorted image names; images downsized by ``downsize_factor`` (8:
the long side becomes ``max(w, h) // 8``, 6048 x 4032 -> 756 x 504), cameras scaled
to them, and the depth maps (stored at that low resolution) resized to them if they
differ. ``root: ETH3D_undistorted`` is downloaded on first use (about 6 GB);
``root: builtin/eth3d`` is the built-in offline set in the same layout (640 x 480
renders: use ``downsize_factor: 1``).

Items are those of :class:`~gluefactory.datasets.posed_images.PosedImages`: ``view0``,
``view1`` (image, camera, ``T_w2cam``, depth), ``T_0to1``, ``T_1to0``.
"""

from __future__ import annotations

from pathlib import Path

from ..formats import eth3d
from ..formats.records import View
from ..utils.errors import ConfigError
from ..utils.image import ImagePreprocessor
from .posed_images import PosedImages


class ETH3D(PosedImages):
    """ETH3D scenes as pairs (config: ``root``, ``scene_list``, ``downsize_factor``,
    ``min_covisibility``, ``preprocessing`` without ``resize``, which the factor sets)."""

    default_conf = {
        "root": "ETH3D_undistorted",
        "image_dir": "{scene}/" + eth3d.IMAGES,
        "depth_dir": "{scene}/" + eth3d.DEPTHS,
        "views": "{scene}/" + eth3d.CALIBRATION,
        "view_groups": None,
        "depth_format": "png",
        "downsize_factor": 8,
        "min_covisibility": eth3d.MIN_COVISIBILITY,
    }

    def _init(self, conf) -> None:
        if not (isinstance(conf.downsize_factor, int) and conf.downsize_factor >= 1):
            raise ConfigError(
                f"eth3d: downsize_factor must be an integer >= 1, got "
                f"{conf.downsize_factor!r}."
            )
        if conf.preprocessing.resize is not None:
            raise ConfigError(
                "eth3d: set data.downsize_factor, not data.preprocessing.resize (got "
                f"{conf.preprocessing.resize!r}): the images are downsized by a factor."
            )
        if conf.depth_format != "png":
            raise ConfigError("eth3d: the depth maps are PNG (depth_format: png).")
        self._preprocessors: dict[tuple[int, int], ImagePreprocessor] = {}
        super()._init(conf)

    def read_scene(self, scene: str) -> tuple[dict[str, View], list[tuple]]:
        s = eth3d.read_scene(self.root / scene, self.conf.min_covisibility)
        return s.views, s.groups

    def scene_files(self, scene: str) -> list[Path]:
        calib = self._path(self.conf.views, scene)
        return [calib / eth3d.CAMERAS, calib / eth3d.IMAGES_TXT]

    def image_preprocessor(self, w: int, h: int) -> ImagePreprocessor:
        """Long side ``max(w, h) // downsize_factor`` (upstream's rule)."""
        factor = self.conf.downsize_factor
        if factor == 1:
            return self.preprocessor
        if (w, h) not in self._preprocessors:
            conf = {**self.conf.preprocessing, "resize": max(w, h) // factor}
            self._preprocessors[(w, h)] = ImagePreprocessor({**conf, "side": "long"})
        return self._preprocessors[(w, h)]

    def depth_size(self, w: int, h: int) -> None:
        return None  # stored at the benchmark's resolution; resized to the images
