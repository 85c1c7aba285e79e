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

Reading and writing go through :mod:`gluefactory.formats.posed` and
:mod:`gluefactory.formats.megadepth` (same view checks, same depth rules). The overlap
of images i and j is :func:`gluefactory.geometry.depth.overlap`: the fraction of i's
valid depth pixels (on a grid of ``stride`` px) that project inside j in front of it
with a depth that agrees with j's depth map within ``depth_tol`` (relative), i.e. the
co-visible part of i; images without depth get no depth path (the dataset skips them).
Intrinsics keep COLMAP's principal point, which is the library's +0.5 convention
already.

Command line: ``python -m gluefactory.datasets.sources.megadepth_convert SRC DST [--scenes ...]``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from ...formats import megadepth, posed
from ...formats.depth import FORMATS, read_depth, write_depth
from ...geometry.depth import overlap
from ...utils.errors import DataError
from ...utils.fs import atomic_path, atomic_write_text


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _depth_file(depth_dir: Path, name: str) -> Path | None:
    """The depth map of image ``name`` in ``depth_dir`` (``.h5`` first), or None."""
    for fmt in FORMATS:
        path = depth_dir / posed.depth_name(name, fmt)
        if path.is_file():
            return path
    return None


def convert_scene(
    src: Path, dst: Path, scene: str, stride: int = 8, depth_tol: float = 0.05
) -> dict:
    """Convert one scene; returns a summary (images, with depth, pairs)."""
    sdir = src / scene
    views = posed.read_views(sdir / posed.VIEWS)
    names = sorted(views)
    image_paths, depth_paths, depths = [], [], []
    for name in names:
        path = sdir / posed.IMAGES / name
        if not path.is_file():
            raise DataError(
                f"{sdir / posed.VIEWS} lists {name} but {path} does not exist."
            )
        if Path(name).name != name:
            raise DataError(f"Image names with folders are not supported: {name}.")
        image_paths.append(megadepth.image_path(scene, name))
        _copy(path, dst / image_paths[-1])
        dfile = _depth_file(sdir / posed.DEPTHS, name)
        d = None if dfile is None else read_depth(dfile, views[name].size)
        if d is not None:
            depth_paths.append(megadepth.depth_path(scene, name))
            write_depth(dst / depth_paths[-1], d)
        else:
            depth_paths.append(None)
        depths.append(None if d is None else torch.from_numpy(d).double())
    n = len(names)
    cams = [views[k].camera() for k in names]
    poses = [views[k].pose() for k in names]
    ov = np.full((n, n), -1.0)
    for i in range(n):
        ov[i, i] = 1.0 if depths[i] is not None else -1.0
        for j in range(n):
            if i != j and depths[i] is not None and depths[j] is not None:
                ov[i, j] = overlap(
                    depths[i], depths[j], poses[j] @ poses[i].inv(), cams[i],
                    cams[j], stride, tol=depth_tol,
                )  # fmt: skip
    megadepth.write_scene_info(
        dst / megadepth.INFO_DIR / f"{scene}.npz",
        image_paths,
        depth_paths,
        [views[k] for k in names],
        ov,
    )
    pairs = []
    if (sdir / posed.PAIRS).is_file():
        for group in posed.read_groups(sdir / posed.PAIRS, views):
            pairs.append(" ".join(f"{scene}/images/{p}" for p in group[:2]))
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
            sorted(p.name for p in src.iterdir() if (p / posed.VIEWS).is_file())
            if src.is_dir()
            else []
        )
    if not scenes:
        raise DataError(f"No posed scene (folder with views.txt) in {src}.")
    summary = [convert_scene(src, dst, s, stride, depth_tol) for s in scenes]
    atomic_write_text(dst / "scenes.txt", "".join(f"{s}\n" for s in scenes))
    atomic_write_text(
        dst / "pairs.txt", "".join(f"{p}\n" for s in summary for p in s["pairs"])
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
