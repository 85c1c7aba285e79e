"""Real photographs available offline, written to a folder for training and tests.

``ensure_photos()`` writes the photographs that ship inside scikit-image's wheel (about
20 of them load without a network) to ``<data_root>/photos/`` as PNG files, once, and
optionally more real photographs from Debian packages, when they are unpacked (no
install needed):

- the 55 photos of ``opencv-doc`` (``apt-get download opencv-doc && dpkg -x
  opencv-doc_*.deb <dir>``; pass ``opencv_doc=<dir>`` or set ``GLUEFACTORY_OPENCV_DOC``);
- the 35 photographs (the rendered artwork is left out) of three wallpaper packages,
  ``lomiri-wallpapers-16.04`` (CC-BY), ``mate-backgrounds`` and
  ``plasma-workspace-wallpapers``, unpacked into one folder (``apt-get download
  lomiri-wallpapers-16.04 mate-backgrounds plasma-workspace-wallpapers && for f in
  *.deb; do dpkg -x $f <dir>; done``; pass ``wallpapers=<dir>`` or set
  ``GLUEFACTORY_WALLPAPERS``). They are stored with their long side reduced to 1024.

The homographies dataset uses the folder with ``data_dir: photos`` (created on first
use).

These are not wide-baseline internet photographs: numbers measured on them are not
comparable with published HPatches or MegaDepth results.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from ... import settings
from ...utils.errors import DataError
from ...utils.fs import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

#: scikit-image photographs that load offline (real camera images, no synthetic ones,
#: no tiny thumbnails). ``cat`` is the same picture as ``chelsea`` and is left out.
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "cell",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "page",
    "retina",
    "rocket",
    "text",
)

#: subfolder of opencv-doc holding its example images
OPENCV_DOC_SUBDIR = "usr/share/doc/opencv-doc/examples/data"
OPENCV_DOC_ENV = "GLUEFACTORY_OPENCV_DOC"

#: the photographs of the Debian wallpaper packages (paths in the unpacked tree); the
#: others are rendered artwork, whose flat colours and gradients are not photographs
WALLPAPER_PHOTOS = tuple(
    [
        f"usr/share/backgrounds/{n}_by_{a}.jpg"
        for n, a in (
            ("Bridge", "Sander_Klootwijk"),
            ("Dragonfly", "Bolly"),
            ("Picture_0B", "freespace"),
            ("Picture_1A", "freespace"),
            ("Wine", "Jakkub_Mede"),
            ("aitzgorri", "Aitzol_Berasategi"),
            ("free", "Peter_Nerlich"),
            ("friends", "Aitzol_Berasategi"),
            ("greentock", "Peter_Nerlich"),
            ("life", "Aitzol_Berasategi"),
            ("picosdeeuropa", "Aitzol_Berasategi"),
            ("seeding", "Clements_Engelhardt"),
            ("sunset", "Aitzol_Berasategi"),
        )
    ]
    + [
        f"usr/share/backgrounds/mate/nature/{n}.jpg"
        for n in (
            "Aqua Blinds Dune FreshFlower Garden GreenMeadow LadyBird RainDrops "
            "Storm TwoWings Wood YellowFlower"
        ).split()
    ]
    + [
        f"usr/share/wallpapers/{n}/contents/images/1920x1080.jpg"
        for n in (
            "BytheWater ColdRipple EveningGlow FallenLeaf Grey Kite OneStandsOut "
            "Path summer_1am"
        ).split()
    ]
    + ["usr/share/wallpapers/ColorfulCups/contents/images/2560x1600.jpg"]
)
WALLPAPERS_ENV = "GLUEFACTORY_WALLPAPERS"
WALLPAPER_PACKAGES = (
    "lomiri-wallpapers-16.04",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
)
#: long side of the stored wallpaper photos (the originals are up to 2560 px)
WALLPAPER_SIZE = 1024
_MARKER = ".complete"
_PREFIXES = ("skimage_", "opencv_", "wallpaper_")


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover
        raise DataError(f"Could not encode {path}.")
    atomic_write_bytes(path, buf.tobytes())


def skimage_photos() -> dict[str, np.ndarray]:
    """name -> uint8 image (H, W) or (H, W, 3) of the offline scikit-image photographs."""
    try:
        import skimage.data as skd
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise DataError("The built-in photos need scikit-image.") from e
    photos = {}
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skd, name)()
        except Exception as e:  # a loader that needs a download: skip it, loudly
            logger.warning("scikit-image photo %s is not available: %s", name, e)
            continue
        photos[name] = np.asarray(image, dtype=np.uint8)
    return photos


def opencv_doc_photos(root: str | Path) -> list[Path]:
    """Real photographs (jpg, > 300 px) of an unpacked opencv-doc package."""
    root = Path(root)
    data = root / OPENCV_DOC_SUBDIR if (root / OPENCV_DOC_SUBDIR).is_dir() else root
    if not data.is_dir():
        raise DataError(
            f"No opencv-doc example data under {root}: run `apt-get download opencv-doc "
            f"&& dpkg -x opencv-doc_*.deb {root}`."
        )
    return sorted(
        p for p in data.glob("*.jpg") if min(cv2.imread(str(p)).shape[:2]) >= 300
    )


def wallpaper_photos(root: str | Path) -> list[Path]:
    """The photographs of the wallpaper packages unpacked into ``root``."""
    root = Path(root)
    found = [root / p for p in WALLPAPER_PHOTOS if (root / p).is_file()]
    if not found:
        raise DataError(
            f"No wallpaper photographs under {root}: run `apt-get download "
            f"{' '.join(WALLPAPER_PACKAGES)} && for f in *.deb; do dpkg -x $f {root}; "
            "done`."
        )
    if len(found) < len(WALLPAPER_PHOTOS):
        logger.warning(
            "%d of the %d wallpaper photographs are under %s (a package is missing?).",
            len(found),
            len(WALLPAPER_PHOTOS),
            root,
        )
    return found


def _wallpaper_name(path: Path) -> str:
    """A unique, readable file name: the author's title, or the plasma theme folder."""
    parts = path.parts  # plasma: .../wallpapers/<theme>/contents/images/<size>.jpg
    stem = parts[-4] if parts[-3] == "contents" else path.stem
    return f"wallpaper_{stem}.jpg"


def _write_reduced(path: Path, source: Path, long_side: int) -> None:
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        raise DataError(f"Could not read {source}: the package file is corrupt.")
    s = long_side / max(image.shape[:2])
    if s < 1:
        size = (round(image.shape[1] * s), round(image.shape[0] * s))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:  # pragma: no cover
        raise DataError(f"Could not encode {path}.")
    atomic_write_bytes(path, buf.tobytes())


def ensure_photos(
    root: str | Path | None = None,
    opencv_doc: str | Path | None = None,
    wallpapers: str | Path | None = None,
) -> Path:
    """Write the offline photographs to ``root`` (default ``<data_root>/photos``) once.

    ``opencv_doc`` / ``wallpapers``: unpacked Debian packages to add (default: the
    environment variables of the module docs). Returns the folder. A marker file
    records what was written, so an interrupted write is redone; files are written
    atomically.
    """
    root = Path(root) if root is not None else settings.data_root() / "photos"
    opencv_doc = opencv_doc or os.environ.get(OPENCV_DOC_ENV) or None
    wallpapers = wallpapers or os.environ.get(WALLPAPERS_ENV) or None
    marker = root / _MARKER
    want = "skimage" + (f"+opencv-doc:{opencv_doc}" if opencv_doc else "")
    want += f"+wallpapers:{wallpapers}" if wallpapers else ""
    if marker.exists() and marker.read_text().strip() == want:
        return root
    root.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for old in root.iterdir():  # photos of a source no longer wanted must not stay
        if old.name.startswith(_PREFIXES):
            old.unlink()
    for name, image in skimage_photos().items():
        _write_png(root / f"skimage_{name}.png", image)
    if opencv_doc:
        for p in opencv_doc_photos(opencv_doc):
            atomic_write_bytes(root / f"opencv_{p.name}", p.read_bytes())
    if wallpapers:
        for p in wallpaper_photos(wallpapers):
            _write_reduced(root / _wallpaper_name(p), p, WALLPAPER_SIZE)
    atomic_write_text(marker, want + "\n")
    return root
