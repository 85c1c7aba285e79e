"""Convert posed images (the ``posed_images`` text format) into the MegaDepth layout.

So that any posed set with depth (the built-in ``builtin/posed``, one's own COLMAP
reconstruction exported as ``views.txt``) can fine-tune a matcher with the ``megadepth``
dataset. Input, per scene (see :mod:`gluefactory.datasets.posed_images`)::

    <src>/<scene>/images/<name>, <src>/<scene>/depths/<stem>.h5 (dataset "depth") or
    <stem>.png (depth * 256), <src>/<scene>/views.txt, optional <src>/<scene>/pairs.txt

``views.txt`` lines: ``name R(9, row-major, world->camera) t(3) MODEL W H params``
(pinhole models, or models whose distortion parameters are all zero). Output::

    <dst>/Undistorted_SfM/<scene>/images/<name>
    <dst>/depth_undistorted/<scene>/<stem>.h5      ("/depth", float32, 0 = unknown)
    <dst>/scene_info/<scene>.npz                   (image_paths, depth_paths,
                                                    intrinsics, poses, overlap_matrix)
    <dst>/scenes.txt, <dst>/pairs.txt               (scene list; the input pairs)

The overlap of images i and j is the fraction of i's valid depth pixels (on a grid of
``stride`` px) that project inside j in front of it with a depth that agrees with j's
depth map within ``depth_tol`` (relative), i.e. the co-visible part of i; images without
depth get no depth path (the dataset skips them). Intrinsics keep COLMAP's principal
point, which is the library's +0.5 convention already.

Command line: ``python -m gluefactory.datasets.sources.megadepth_convert SRC DST [--scenes ...]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np

from ...utils.errors import DataError

PINHOLE = {
    "SIMPLE_PINHOLE": (3, lambda p: (p[0], p[0], p[1], p[2]), 3),
    "PINHOLE": (4, lambda p: (p[0], p[1], p[2], p[3]), 4),
    "SIMPLE_RADIAL": (4, lambda p: (p[0], p[0], p[1], p[2]), 3),
    "RADIAL": (5, lambda p: (p[0], p[0], p[1], p[2]), 3),
    "OPENCV": (8, lambda p: (p[0], p[1], p[2], p[3]), 4),
}


def read_views(path: Path) -> dict[str, dict]:
    """name -> dict(K (3, 3), T (4, 4) world->camera, size (w, h)) from a views.txt."""
    views = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{ln}"
        if len(parts) < 17:
            raise DataError(f"{where}: expected name R(9) t(3) MODEL W H params.")
        name, model = parts[0], parts[13]
        if model not in PINHOLE:
            raise DataError(
                f"{where}: camera model {model} is not supported ({', '.join(PINHOLE)})."
            )
        n, pinhole, n_pin = PINHOLE[model]
        try:
            R = np.array(parts[1:10], float).reshape(3, 3)
            t = np.array(parts[10:13], float)
            w, h = int(parts[14]), int(parts[15])
            params = np.array(parts[16:], float)
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
        if len(params) != n:
            raise DataError(
                f"{where}: {model} takes {n} parameters, got {len(params)}."
            )
        if np.any(params[n_pin:] != 0):
            raise DataError(
                f"{where}: distorted camera ({model} {params[n_pin:]}); undistort first."
            )
        fx, fy, cx, cy = pinhole(params)
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
        views[name] = {"K": K, "T": T, "size": (w, h)}
    if not views:
        raise DataError(f"{path}: no views.")
    return views


def read_depth(depth_dir: Path, stem: str) -> np.ndarray | None:
    """Depth (H, W) float32 (0 = unknown) from <stem>.h5 or <stem>.png, or None."""
    h5 = depth_dir / f"{stem}.h5"
    if h5.is_file():
        with h5py.File(h5, "r") as f:
            key = "depth" if "depth" in f else next(iter(f.keys()))
            d = np.asarray(f[key], np.float32)
    elif (depth_dir / f"{stem}.png").is_file():
        png = depth_dir / f"{stem}.png"
        raw = cv2.imread(str(png), cv2.IMREAD_ANYDEPTH)
        if raw is None:
            raise DataError(f"Cannot read depth {png}.")
        d = raw.astype(np.float32) / 256.0
    else:
        return None
    return np.where(np.isfinite(d) & (d > 0), d, 0).astype(np.float32)


def overlap(
    depth_i: np.ndarray, K_i, T_i, depth_j: np.ndarray, K_j, T_j,
    stride: int = 8, depth_tol: float = 0.05,
) -> float:  # fmt: skip
    """Fraction of i's valid depth pixels (grid) co-visible in j (module docstring)."""
    h, w = depth_i.shape
    v, u = np.mgrid[stride // 2 : h : stride, stride // 2 : w : stride]
    z = depth_i[v, u]
    ok = z > 0
    if not ok.any():
        return 0.0
    p = np.stack([u[ok] + 0.5, v[ok] + 0.5, np.ones(ok.sum())], 0)  # pixel centres
    X = np.linalg.inv(K_i) @ p * z[ok]
    T = T_j @ np.linalg.inv(T_i)
    Xj = T[:3, :3] @ X + T[:3, 3:]
    zj = Xj[2]
    front = zj > 1e-6
    q = K_j @ (Xj / np.where(front, zj, 1.0))
    hj, wj = depth_j.shape
    inside = front & (q[0] >= 0) & (q[0] < wj) & (q[1] >= 0) & (q[1] < hj)
    qi = np.clip(q[0].astype(int), 0, wj - 1), np.clip(q[1].astype(int), 0, hj - 1)
    dj = depth_j[qi[1], qi[0]]
    agree = inside & (dj > 0) & (np.abs(dj - zj) <= depth_tol * zj)
    return float(agree.sum() / ok.sum())


def _copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def convert_scene(
    src: Path, dst: Path, scene: str, stride: int = 8, depth_tol: float = 0.05
) -> dict:
    """Convert one scene; returns a summary (images, with depth, pairs)."""
    sdir = src / scene
    views = read_views(sdir / "views.txt")
    names = sorted(views)
    img_out = dst / "Undistorted_SfM" / scene / "images"
    dep_out = dst / "depth_undistorted" / scene
    img_out.mkdir(parents=True, exist_ok=True)
    dep_out.mkdir(parents=True, exist_ok=True)
    image_paths, depth_paths, depths = [], [], []
    for name in names:
        path = sdir / "images" / name
        if not path.is_file():
            raise DataError(
                f"{sdir / 'views.txt'} lists {name} but {path} does not exist."
            )
        if Path(name).name != name:
            raise DataError(f"Image names with folders are not supported: {name}.")
        _copy(path, img_out / name)
        image_paths.append(f"Undistorted_SfM/{scene}/images/{name}")
        d = read_depth(sdir / "depths", Path(name).stem)
        w, h = views[name]["size"]
        if d is not None and d.shape != (h, w):
            raise DataError(
                f"Depth of {name} is {d.shape[1]}x{d.shape[0]}, views.txt says {w}x{h}."
            )
        if d is not None:
            out = dep_out / f"{Path(name).stem}.h5"
            tmp = out.with_name(out.name + ".tmp")
            with h5py.File(tmp, "w") as f:
                f.create_dataset("depth", data=d, compression="gzip")
            os.replace(tmp, out)
            depth_paths.append(f"depth_undistorted/{scene}/{Path(name).stem}.h5")
        else:
            depth_paths.append(None)
        depths.append(d)
    n = len(names)
    ov = np.full((n, n), -1.0)
    for i in range(n):
        ov[i, i] = 1.0 if depths[i] is not None else -1.0
        for j in range(n):
            if i != j and depths[i] is not None and depths[j] is not None:
                vi, vj = views[names[i]], views[names[j]]
                ov[i, j] = overlap(
                    depths[i],
                    vi["K"],
                    vi["T"],
                    depths[j],
                    vj["K"],
                    vj["T"],
                    stride,
                    depth_tol,
                )
    info = dst / "scene_info" / f"{scene}.npz"
    info.parent.mkdir(parents=True, exist_ok=True)
    tmp = info.with_name(info.name + ".tmp.npz")
    np.savez(
        tmp,
        image_paths=np.array(image_paths, dtype=object),
        depth_paths=np.array(depth_paths, dtype=object),
        intrinsics=np.stack([views[k]["K"] for k in names]),
        poses=np.stack([views[k]["T"] for k in names]),
        overlap_matrix=ov,
    )
    os.replace(tmp, info)
    pairs = []
    if (sdir / "pairs.txt").is_file():
        for line in (sdir / "pairs.txt").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("#"):
                pairs.append(" ".join(f"{scene}/images/{p}" for p in parts[:2]))
    return {
        "scene": scene,
        "images": n,
        "with_depth": sum(d is not None for d in depths),
        "pairs": pairs,
    }


def convert(
    src: str | Path, dst: str | Path, scenes: list[str] | None = None,
    stride: int = 8, depth_tol: float = 0.05,
) -> list[dict]:  # fmt: skip
    """Convert the scenes (default: every folder of ``src`` with a views.txt)."""
    src, dst = Path(src), Path(dst)
    if scenes is None:
        scenes = (
            sorted(p.name for p in src.iterdir() if (p / "views.txt").is_file())
            if src.is_dir()
            else []
        )
    if not scenes:
        raise DataError(f"No posed scene (folder with views.txt) in {src}.")
    summary = [convert_scene(src, dst, s, stride, depth_tol) for s in scenes]
    (dst / "scenes.txt").write_text("".join(f"{s}\n" for s in scenes))
    (dst / "pairs.txt").write_text(
        "".join(f"{p}\n" for s in summary for p in s["pairs"])
    )
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("src", help="root of posed scenes (<scene>/views.txt)")
    parser.add_argument("dst", help="output MegaDepth-layout root")
    parser.add_argument("--scenes", nargs="*")
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--depth_tol", type=float, default=0.05)
    args = parser.parse_args(argv)
    for s in convert(args.src, args.dst, args.scenes, args.stride, args.depth_tol):
        print(
            f"{s['scene']}: {s['images']} images, {s['with_depth']} with depth, {len(s['pairs'])} pairs"
        )


if __name__ == "__main__":
    from ...utils.cli import main_wrapper

    main_wrapper(main)()
