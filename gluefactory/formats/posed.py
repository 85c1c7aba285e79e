"""Posed text: the format of MegaDepth-1500, of the built-in posed set and of user data.

Layout of a scene folder (the default paths; datasets may configure others)::

    <scene>/images/<name>          the images
    <scene>/depths/<stem>.h5|png   optional depth maps (:mod:`.depth`)
    <scene>/views.txt              one line per image
    <scene>/pairs.txt              optional: one group of 2 (or more) names per line

``views.txt``: ``name r11 r12 r13 r21 ... r33 t1 t2 t3 MODEL W H params...``: the
world-to-camera rotation (row-major) and translation, then a COLMAP camera
(``SIMPLE_PINHOLE f cx cy``, ``PINHOLE fx fy cx cy``, or a distortion model whose
distortion parameters are all 0). Principal points follow COLMAP, i.e. the library
convention (pixel centres at +0.5). Lines starting with ``#`` are comments. Every view
passes :func:`.records.check_view` (R a rotation, finite pose, positive focal lengths).
Numbers are written with 12 significant digits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..utils.errors import DataError
from ..utils.fs import atomic_write_text
from .depth import write_depth
from .records import Scene, View, check_view

IMAGES, DEPTHS, VIEWS, PAIRS = "images", "depths", "views.txt", "pairs.txt"

#: COLMAP camera models: parameter names; the pinhole part is (fx, fy, cx, cy)
CAMERA_MODELS = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2",
                    "k3", "k4", "k5", "k6"),
}  # fmt: skip


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty, non-comment lines of a text file."""
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if fields and not fields[0].startswith("#"):
            yield lineno, fields


def parse_camera(model: str, params: Sequence[float], where: str) -> np.ndarray:
    """K (3, 3) of a COLMAP camera whose distortion is zero."""
    if model not in CAMERA_MODELS:
        raise DataError(
            f"{where}: unknown camera model {model!r}; expected one of "
            f"{', '.join(CAMERA_MODELS)}."
        )
    names = CAMERA_MODELS[model]
    if len(params) != len(names):
        raise DataError(
            f"{where}: camera {model} takes {len(names)} parameters "
            f"({' '.join(names)}), got {len(params)}."
        )
    values = dict(zip(names, params))
    if "f" in values:
        values["fx"] = values["fy"] = values["f"]
    distortion = [v for k, v in values.items() if k[0] in "kp"]
    if any(abs(v) > 0 for v in distortion):
        raise DataError(
            f"{where}: distorted camera: {model} has non-zero distortion "
            f"{distortion}; posed images must be undistorted (e.g. colmap "
            "image_undistorter)."
        )
    return np.array(
        [[values["fx"], 0, values["cx"]], [0, values["fy"], values["cy"]], [0, 0, 1]],
        dtype=np.float64,
    )


def read_views(path: str | Path) -> dict[str, View]:
    """Read a ``views.txt``: image name -> :class:`View`, in file order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Views file not found: {path}")
    views = {}
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) < 17:
            raise DataError(
                f"{where}: expected 'name R(9) t(3) MODEL W H params...', got "
                f"{len(fields)} fields."
            )
        name = fields[0]
        try:
            Rt = np.array([float(x) for x in fields[1:13]], dtype=np.float64)
            w, h = int(fields[14]), int(fields[15])
            params = [float(x) for x in fields[16:]]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if name in views:
            raise DataError(f"{where}: image {name!r} is listed twice.")
        K = parse_camera(fields[13], params, where)
        view = View.from_Rt(name, K, Rt[:9].reshape(3, 3), Rt[9:], (w, h))
        views[name] = check_view(view, where)
    if not views:
        raise DataError(f"Views file {path} lists no image.")
    return views


def format_view(view: View) -> str:
    """The ``views.txt`` line of a view (a ``PINHOLE`` camera)."""
    K = view.K
    nums = " ".join(f"{v:.12g}" for v in [*view.R.ravel(), *view.t.ravel()])
    w, h = view.size
    return (
        f"{view.name} {nums} PINHOLE {w} {h} {K[0, 0]:.12g} {K[1, 1]:.12g} "
        f"{K[0, 2]:.12g} {K[1, 2]:.12g}"
    )


def write_views(path: str | Path, views: Iterable[View]) -> Path:
    lines = [format_view(check_view(v, f"view {v.name}")) for v in views]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def check_distinct(names: Sequence[str], where: str) -> None:
    """A group (pair, triplet) of views names each image once: an image paired with
    itself has no baseline (identity pose, every match trivially right). ``where``:
    ``file:line`` for the :class:`DataError`."""
    seen = set()
    for name in names:
        if name in seen:
            raise DataError(
                f"{where}: image {name} appears twice in the group {' '.join(names)}: "
                "an image paired with itself has no baseline; remove the line."
            )
        seen.add(name)


def read_groups(
    path: str | Path, views: Mapping[str, View] | None = None
) -> list[tuple[str, ...]]:
    """Read a ``pairs.txt``: groups of 2 or more names (each in ``views`` if given)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"View groups file {path} not found.")
    groups = []
    for lineno, names in _lines(path):
        if len(names) < 2:
            raise DataError(f"{path}:{lineno}: a group needs 2 or more image names.")
        check_distinct(names, f"{path}:{lineno}")
        unknown = [n for n in names if views is not None and n not in views]
        if unknown:
            raise DataError(
                f"{path}:{lineno}: image(s) {unknown} are not in the views file."
            )
        groups.append(tuple(names))
    return groups


def write_groups(path: str | Path, groups: Iterable[Sequence[str]]) -> Path:
    return atomic_write_text(path, "\n".join(" ".join(g) for g in groups) + "\n")


def depth_name(image: str, fmt: str = "h5") -> str:
    """``depths/`` file name of an image: its stem with the depth format's suffix."""
    return str(Path(image).with_suffix(f".{fmt}"))


def read_scene(folder: str | Path) -> Scene:
    """The views and groups (none without ``pairs.txt``) of a scene folder."""
    folder = Path(folder)
    views = read_views(folder / VIEWS)
    groups = read_groups(folder / PAIRS, views) if (folder / PAIRS).is_file() else []
    return Scene(folder.name, views, groups)


def write_scene(
    folder: str | Path,
    scene: Scene,
    depths: Mapping[str, np.ndarray] | None = None,
    depth_format: str = "h5",
) -> Path:
    """Write ``views.txt``, ``pairs.txt`` (if the scene has groups) and the depth maps
    of ``depths`` (name -> (H, W) map, the view's size) into ``folder``. The images are
    the caller's: their encoding is not part of the format."""
    folder = Path(folder)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    for name, depth in (depths or {}).items():
        w, h = scene.views[name].size
        if np.shape(depth) != (h, w):
            raise ValueError(f"depth of {name} is {np.shape(depth)}, its view {w}x{h}.")
        write_depth(folder / DEPTHS / depth_name(name, depth_format), depth)
    write_views(folder / VIEWS, scene.views.values())
    if scene.groups:
        write_groups(folder / PAIRS, scene.groups)
    return folder
