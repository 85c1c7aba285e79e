"""Real photographs available offline, written to a folder for training and tests.

``ensure_photos()`` writes the photographs that ship inside scikit-image's wheel (about
20 of them load without a network) to ``<data_root>/photos/`` as PNG files, once, and
optionally the ~70 real photos of Debian's ``opencv-doc`` package when it is unpacked
(``apt-get download opencv-doc && dpkg -x opencv-doc_*.deb <dir>``; pass
``opencv_doc=<dir>`` or set ``GLUEFACTORY_OPENCV_DOC``). The homographies dataset uses
the folder with ``data_dir: photos`` (created on first use).

These are not wide-baseline internet photographs: numbers measured on them are not
comparable with published HPatches or MegaDepth results.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np

from .. import settings
from ..utils.errors import DataError

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
_MARKER = ".complete"


def _write_png(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[2] == 3:
        image = image[..., ::-1]  # RGB -> BGR for OpenCV
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image))
    if not ok:  # pragma: no cover
        raise DataError(f"Could not encode {path}.")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


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


def ensure_photos(
    root: str | Path | None = None, opencv_doc: str | Path | None = None
) -> Path:
    """Write the offline photographs to ``root`` (default ``<data_root>/photos``) once.

    Returns the folder. A marker file records completion, so an interrupted write is
    redone; files are written atomically.
    """
    root = Path(root) if root is not None else settings.data_root() / "photos"
    opencv_doc = opencv_doc or os.environ.get(OPENCV_DOC_ENV) or None
    marker = root / _MARKER
    want = "skimage" + (f"+opencv-doc:{opencv_doc}" if opencv_doc else "")
    if marker.exists() and marker.read_text().strip() == want:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for name, image in skimage_photos().items():
        _write_png(root / f"skimage_{name}.png", image)
    if opencv_doc:
        for p in opencv_doc_photos(opencv_doc):
            target = root / f"opencv_{p.name}"
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(p.read_bytes())
            os.replace(tmp, target)
    marker.write_text(want + "\n")
    return root
