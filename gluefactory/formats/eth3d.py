"""ETH3D undistorted (the layout of ``ETH3D_undistorted.zip``, SOLD2's line benchmark).

Layout of a scene folder::

    <scene>/images/dslr_images_undistorted/<name>            the images
    <scene>/ground_truth_depth/undistorted_depth/<stem>.png  depth (16-bit PNG, z * 256)
    <scene>/dslr_calibration_undistorted/cameras.txt         COLMAP text cameras
    <scene>/dslr_calibration_undistorted/images.txt          COLMAP text images

``cameras.txt``: one line per camera, ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` (an
undistorted model: :func:`.posed.parse_camera`). ``images.txt``: two lines per image,
``IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME`` (the world-to-camera rotation as a
unit quaternion and the translation) and ``X Y POINT3D_ID`` triplets of its
observations (possibly an empty line; ``POINT3D_ID`` -1 is an unmatched observation).
Lines starting with ``#`` are comments. COLMAP's principal points already follow the
library convention (pixel centres at +0.5). A view is named by the base name of
``NAME`` (``NAME`` is relative to ``images/``), as upstream glue-factory does.

The pairs of a scene are the pairs of views that observe at least ``min_covisibility``
common 3D points (upstream: 500), in the order of the sorted view names. The depth maps
of the archive are at 1/8 of the image resolution (the benchmark's images are downsized
by 8): the dataset resizes them to the images it loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..utils.errors import DataError
from ..utils.fs import atomic_write_text
from .depth import write_depth
from .posed import parse_camera
from .records import Scene, View, check_view

IMAGES = "images/dslr_images_undistorted"
DEPTHS = "ground_truth_depth/undistorted_depth"
CALIBRATION = "dslr_calibration_undistorted"
CAMERAS, IMAGES_TXT = "cameras.txt", "images.txt"
#: upstream's minimum number of co-visible 3D points of a pair
MIN_COVISIBILITY = 500
#: largest accepted deviation of a quaternion's norm from 1 (files keep ~6-17 digits)
QUATERNION_TOL = 1e-3


def qvec_to_rotmat(q: Iterable[float]) -> np.ndarray:
    """Rotation (3, 3) of a unit quaternion (w, x, y, z), COLMAP's order."""
    w, x, y, z = (float(v) for v in q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 of a rotation (3, 3).

    The largest of the four squared components is computed first (Shepperd's method),
    so no division by a small number occurs.
    """
    R = np.asarray(R, np.float64)
    tr = np.trace(R)
    cands = np.array([tr, R[0, 0], R[1, 1], R[2, 2]])
    k = int(np.argmax(cands))
    if k == 0:
        s = 2 * np.sqrt(1 + tr)
        q = [s / 4, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s,
             (R[1, 0] - R[0, 1]) / s]  # fmt: skip
    elif k == 1:
        s = 2 * np.sqrt(1 + R[0, 0] - R[1, 1] - R[2, 2])
        q = [(R[2, 1] - R[1, 2]) / s, s / 4, (R[0, 1] + R[1, 0]) / s,
             (R[0, 2] + R[2, 0]) / s]  # fmt: skip
    elif k == 2:
        s = 2 * np.sqrt(1 + R[1, 1] - R[0, 0] - R[2, 2])
        q = [(R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, s / 4,
             (R[1, 2] + R[2, 1]) / s]  # fmt: skip
    else:
        s = 2 * np.sqrt(1 + R[2, 2] - R[0, 0] - R[1, 1])
        q = [(R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s,
             (R[1, 2] + R[2, 1]) / s, s / 4]  # fmt: skip
    q = np.asarray(q)
    return q if q[0] >= 0 else -q


def _data_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every line that is not a comment (empty lines kept: an
    image without observations has an empty second line)."""
    if not path.is_file():
        raise DataError(f"ETH3D calibration file not found: {path}")
    lines = [
        (n, line.strip())
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if not line.lstrip().startswith("#")
    ]
    return lines


def read_cameras(path: str | Path) -> dict[int, tuple[np.ndarray, tuple[int, int]]]:
    """``cameras.txt``: camera id -> (K (3, 3), (width, height))."""
    path = Path(path)
    cameras = {}
    for lineno, line in _data_lines(path):
        if not line:
            continue
        where = f"{path}:{lineno}"
        fields = line.split()
        if len(fields) < 5:
            raise DataError(
                f"{where}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...', got "
                f"{len(fields)} fields."
            )
        try:
            cam_id, w, h = int(fields[0]), int(fields[2]), int(fields[3])
            params = [float(x) for x in fields[4:]]
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if cam_id in cameras:
            raise DataError(f"{where}: camera {cam_id} is listed twice.")
        cameras[cam_id] = (parse_camera(fields[1], params, where), (w, h))
    if not cameras:
        raise DataError(f"Cameras file {path} lists no camera.")
    return cameras


def read_images(
    path: str | Path, cameras: Mapping[int, tuple[np.ndarray, tuple[int, int]]]
) -> tuple[dict[str, View], dict[str, np.ndarray]]:
    """``images.txt``: (view name -> :class:`View`, view name -> the ids (P,) of the 3D
    points it observes, -1 excluded, unique), in file order."""
    path = Path(path)
    lines = _data_lines(path)
    if len(lines) % 2 and not lines[-1][1]:  # an extra newline at the end
        lines.pop()
    if len(lines) % 2:
        lineno = lines[-1][0]
        raise DataError(
            f"{path}:{lineno}: images.txt holds two lines per image (pose, then "
            f"observations); the last image has no observation line."
        )
    views, points = {}, {}
    for (lineno, pose_line), (obs_no, obs_line) in zip(lines[::2], lines[1::2]):
        where = f"{path}:{lineno}"
        fields = pose_line.split()
        if len(fields) < 10:
            raise DataError(
                f"{where}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME', got "
                f"{len(fields)} fields."
            )
        try:
            qt = np.array([float(x) for x in fields[1:8]])
            cam_id = int(fields[8])
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if not np.isfinite(qt).all():
            raise DataError(f"{where}: the pose has non-finite values.")
        if abs(np.linalg.norm(qt[:4]) - 1) > QUATERNION_TOL:
            raise DataError(
                f"{where}: the quaternion {qt[:4].tolist()} is not a unit quaternion "
                f"(norm {np.linalg.norm(qt[:4]):.6g})."
            )
        if cam_id not in cameras:
            raise DataError(
                f"{where}: camera {cam_id} is not in {path.with_name(CAMERAS)}."
            )
        name = Path(" ".join(fields[9:])).name
        if name in views:
            raise DataError(f"{where}: image {name!r} is listed twice.")
        K, size = cameras[cam_id]
        R = qvec_to_rotmat(qt[:4] / np.linalg.norm(qt[:4]))
        views[name] = check_view(View.from_Rt(name, K, R, qt[4:], size), where)
        obs = obs_line.split()
        if len(obs) % 3:
            raise DataError(
                f"{path}:{obs_no}: observations are 'X Y POINT3D_ID' triplets, got "
                f"{len(obs)} values."
            )
        try:
            ids = np.array([int(x) for x in obs[2::3]], dtype=np.int64)
        except ValueError as e:
            raise DataError(f"{path}:{obs_no}: {e}") from None
        points[name] = np.unique(ids[ids != -1])
    if not views:
        raise DataError(f"Images file {path} lists no image.")
    return views, points


def covisible_pairs(
    points: Mapping[str, np.ndarray], min_covisibility: int = MIN_COVISIBILITY
) -> list[tuple[str, str, int]]:
    """(name_i, name_j, n) for the pairs i < j of sorted names that observe
    ``n >= min_covisibility`` common 3D points."""
    names = sorted(points)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            n = len(np.intersect1d(points[a], points[b], assume_unique=True))
            if n >= min_covisibility:
                out.append((a, b, n))
    return out


def read_scene(folder: str | Path, min_covisibility: int = MIN_COVISIBILITY) -> Scene:
    """The views of an ETH3D scene folder and its co-visible pairs as groups."""
    folder = Path(folder)
    calib = folder / CALIBRATION
    cameras = read_cameras(calib / CAMERAS)
    views, points = read_images(calib / IMAGES_TXT, cameras)
    pairs = covisible_pairs(points, min_covisibility)
    return Scene(folder.name, views, [(a, b) for a, b, _ in pairs])


def depth_name(image: str) -> str:
    """The depth file of an image: its stem with ``.png`` (upstream's rule)."""
    return f"{Path(image).stem}.png"


def write_scene(
    folder: str | Path,
    scene: Scene,
    observations: Mapping[str, tuple[np.ndarray, np.ndarray]],
    depths: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write ``cameras.txt`` (one ``PINHOLE`` camera per view, ids in view order),
    ``images.txt`` and the depth PNGs of ``depths`` (name -> (H, W) map of any size).

    ``observations``: name -> (xy (P, 2) float, point3D ids (P,) int) of each view. The
    scene's groups are not written: the reader derives the pairs from covisibility.
    The images are the caller's (in ``<folder>/images/dslr_images_undistorted``).
    """
    folder = Path(folder)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    cams, imgs = (
        ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"],
        [
            "# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME",
            "# POINTS2D[] as (X, Y, POINT3D_ID)",
        ],
    )
    for i, view in enumerate(scene.views.values()):
        check_view(view, f"view {view.name}")
        K, (w, h) = view.K, view.size
        cams.append(
            f"{i} PINHOLE {w} {h} {K[0, 0]:.12g} {K[1, 1]:.12g} {K[0, 2]:.12g} "
            f"{K[1, 2]:.12g}"
        )
        q, t = rotmat_to_qvec(view.R), view.t
        nums = " ".join(f"{v:.12g}" for v in [*q, *t])
        imgs.append(f"{i} {nums} {i} {Path(IMAGES).name}/{view.name}")
        xy, ids = observations.get(view.name, (np.zeros((0, 2)), np.zeros(0, int)))
        imgs.append(
            " ".join(
                f"{x:.2f} {y:.2f} {int(p)}"
                for (x, y), p in zip(np.asarray(xy), np.asarray(ids))
            )
        )
    for name, depth in (depths or {}).items():
        write_depth(folder / DEPTHS / depth_name(name), depth)
    atomic_write_text(folder / CALIBRATION / CAMERAS, "\n".join(cams) + "\n")
    atomic_write_text(folder / CALIBRATION / IMAGES_TXT, "\n".join(imgs) + "\n")
    return folder


def missing_files(folder: str | Path) -> list[str]:
    """The parts of an ETH3D scene folder that are missing ([] = complete)."""
    folder = Path(folder)
    need = [IMAGES, DEPTHS, f"{CALIBRATION}/{CAMERAS}", f"{CALIBRATION}/{IMAGES_TXT}"]
    return [n for n in need if not (folder / n).exists()]
