"""HPatches sequences: one folder per sequence, six images and five homographies.

Layout::

    <root>/<seq>/1.ppm .. 6.ppm   the images (``i_*``: illumination, ``v_*``: viewpoint)
    <root>/<seq>/H_1_2 .. H_1_6   3 x 3 homographies, whitespace-separated text

``H_1_k`` maps pixels of image 1 to image k **with pixel centres at integers**
(OpenCV's convention, as the official files); readers of the dataset convert it to the
library convention (:func:`gluefactory.geometry.homography.homography_from_center_convention`).
A homography must hold 9 finite numbers and be non-singular. It is written scaled to
H[2, 2] = 1, with 13 significant digits (``%.12e``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils.errors import DataError
from ..utils.fs import atomic_write_text

NUM_IMAGES = 6  # 1.ppm .. 6.ppm per sequence


def image_name(i: int) -> str:
    return f"{i}.ppm"


def homography_name(k: int) -> str:
    """The file of the homography from image 1 to image ``k``."""
    return f"H_1_{k}"


def sequence_files() -> list[str]:
    """The files a complete sequence folder holds."""
    return [image_name(i) for i in range(1, NUM_IMAGES + 1)] + [
        homography_name(k) for k in range(2, NUM_IMAGES + 1)
    ]


def missing_files(folder: str | Path) -> list[str]:
    """The files of :func:`sequence_files` that ``folder`` lacks."""
    return [f for f in sequence_files() if not (Path(folder) / f).is_file()]


def read_homography(path: str | Path) -> np.ndarray:
    """A 3 x 3 homography (float64, integer-centre convention) from a text file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(f"Homography file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read the homography file {path}: {e}") from None
    values = []
    for line_no, line in enumerate(text.splitlines(), 1):
        for token in line.split():
            where = f"Homography file {path}, line {line_no}, value {len(values) + 1}"
            try:
                v = float(token)
            except ValueError:
                raise DataError(f"{where}: {token!r} is not a number.") from None
            if not np.isfinite(v):
                raise DataError(
                    f"{where}: {token!r} is not finite (a homography is 9 finite "
                    "numbers, a 3 x 3 matrix)."
                )
            values.append(v)
    if len(values) != 9:
        raise DataError(
            f"Homography file {path} must hold 9 numbers (a 3 x 3 matrix), got "
            f"{len(values)}."
        )
    H = np.array(values, dtype=np.float64).reshape(3, 3)
    if abs(np.linalg.det(H)) < 1e-12:
        raise DataError(f"Homography in {path} is singular.")
    return H


def write_homography(path: str | Path, H: np.ndarray) -> Path:
    """Write a 3 x 3 homography (integer-centre convention), scaled to H[2, 2] = 1,
    atomically."""
    H = np.asarray(H, np.float64)
    if H.shape != (3, 3) or not np.all(np.isfinite(H)) or H[2, 2] == 0:
        raise ValueError(
            f"{path}: a homography is a finite 3 x 3 matrix, H[2, 2] != 0."
        )
    H = H / H[2, 2]
    text = "\n".join(" ".join(f"{v:.12e}" for v in row) for row in H) + "\n"
    return atomic_write_text(path, text)
