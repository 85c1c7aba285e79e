"""What feature caching saves: MegaDepth items and a training step, cache vs live.

    python -m benchmarks.feature_cache [--items 20] [--steps 4] [--keypoints 512]
                                       [--resize 1024] [--threads 1] [--output FILE]

Builds a MegaDepth-layout scene in a temporary data root from the real Middlebury
Motorcycle pair (scikit-image; the built-in posed scene, converted), upscaled to MegaDepth's typical 1600 px JPEGs with
matching depth maps (h5) and intrinsics, exports it with
``python -m gluefactory.scripts.export_megadepth --method xfeat --export_sparse_depth``
and then reports:

Times are CPU time of the process (``time.process_time``, one torch thread by
default), not wall time: on a shared machine the wall time of a niced run measures the
other jobs, the CPU time what this code costs.

- **item**: median CPU milliseconds per ``megadepth`` pair (``__getitem__``; both views at
  long side ``--resize``, square-padded) for live data (image + depth map decoded), the
  cache with ``read_image: true`` (upstream's recipe, glue-factory#124: still decodes the
  image; the depth map is skipped here because keypoint depths are cached) and the cache
  with ``read_image: false`` (neither file opened);
- **step**: median CPU seconds per training step (batch 1; forward, depth ground truth,
  loss, backward, Adam) of the xfeat+lightglue_megadepth model, with live XFeat
  extraction vs from the cache (``allow_no_extract``), ``--keypoints`` per view.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from .common import emit, host, set_threads, step_parts, table, time_alternately

LONG = 1600


def build_tree(root: Path) -> Path:
    """<root>/megadepth: the Motorcycle pair at 1600 px (JPEG), MegaDepth layout,
    written through the format modules."""
    import dataclasses

    from gluefactory.datasets.sources.builtin_posed import middlebury_scene
    from gluefactory.datasets.sources.megadepth_convert import convert
    from gluefactory.formats import megadepth as md
    from gluefactory.formats.depth import read_depth, resize_depth, write_depth

    middlebury_scene(root / "posed" / "motorcycle")
    dst = root / "megadepth"
    convert(root / "posed", dst, stride=8)
    info_path = dst / md.INFO_DIR / "motorcycle.npz"
    info = md.read_scene_info(info_path)
    images, depths, views = [], [], []
    for k in range(len(info.image_paths)):
        src = dst / str(info.image_paths[k])
        im = cv2.imread(str(src))
        h, w = im.shape[:2]
        size = (round(w * LONG / max(h, w)), round(h * LONG / max(h, w)))
        name = src.with_suffix(".jpg").name
        images.append(md.image_path("motorcycle", name))
        im = cv2.resize(im, size, interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(dst / images[-1]), im, [cv2.IMWRITE_JPEG_QUALITY, 95])
        src.unlink()
        depth = torch.from_numpy(read_depth(dst / str(info.depth_paths[k])))
        depths.append(md.depth_path("motorcycle", name))
        write_depth(dst / depths[-1], resize_depth(depth, size[::-1]).numpy())
        view = info.view(k)
        K = view.K * np.array([[size[0] / w], [size[1] / h], [1.0]])
        views.append(dataclasses.replace(view, name=name, K=K))
    md.write_scene_info(info_path, images, depths, views, info.overlap_matrix)
    (dst / "pairs.txt").write_text(
        " ".join(f"motorcycle/images/{Path(p).name}" for p in images) + "\n"
    )
    return dst


def md_conf(resize: int, cache: str | None, read_image: bool, k: int) -> dict:
    conf = {
        "data_dir": "megadepth", "train_split": ["motorcycle"],
        "train_num_per_scene": None, "min_overlap": 0.1,
        "preprocessing": {"resize": resize}, "read_image": read_image,
    }  # fmt: skip
    if cache:
        conf["load_features"] = {
            "do": True, "path": cache + "/{scene}.h5", "padding_length": k,
        }  # fmt: skip
    return conf


def time_items(conf: dict, n: int) -> float:
    """Median CPU milliseconds of ``__getitem__`` of the pair (after a warm-up)."""
    from gluefactory.datasets import get_dataset

    split = get_dataset("megadepth")(conf).get_dataset("train")
    return 1e3 * time_alternately({"item": lambda: split[0]}, n)["item"].cpu


def time_steps(conf_data: dict, cached: bool, k: int, steps: int) -> float:
    """Median CPU seconds of a training step of xfeat+lightglue_megadepth (batch 1,
    data included), live or from the cache (``allow_no_extract``)."""
    from gluefactory.datasets import get_dataset
    from gluefactory.models import get_model
    from gluefactory.utils.conf import compose
    from gluefactory.utils.tensor import collate

    conf = compose("xfeat+lightglue_megadepth", [
        f"model.extractor.max_num_keypoints={k}", f"model.allow_no_extract={cached}"])  # fmt: skip
    model = get_model("two_view_pipeline")(conf.model).train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    split = get_dataset("megadepth")(conf_data).get_dataset("train")

    def step():
        step_parts(model, collate([split[0]]), opt)

    return time_alternately({"step": step}, steps)["step"].cpu


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=int, default=20)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--keypoints", type=int, default=512)
    p.add_argument("--resize", type=int, default=1024)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", default=None)
    args = p.parse_args(argv)
    set_threads(args.threads)
    r, k, kk = args.resize, 2048, args.keypoints
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GLUEFACTORY_DATA"] = tmp
        build_tree(Path(tmp))
        from gluefactory.scripts import export_megadepth

        export_megadepth.main(["--method", "xfeat", "--export_sparse_depth",
                               "data.data_dir=megadepth", f"data.preprocessing.resize={r}"])  # fmt: skip
        cache = f"exports/megadepth-undist-depth-r{r}_XFeat-k{k}"
        items = [
            ("live (image + depth decoded)", time_items(md_conf(r, None, True, k), args.items)),
            ("cache, read_image: true (#124)", time_items(md_conf(r, cache, True, k), args.items)),
            ("cache, read_image: false", time_items(md_conf(r, cache, False, k), args.items)),
        ]  # fmt: skip
        steps = [
            ("live XFeat", time_steps(md_conf(r, None, True, kk), False, kk, args.steps)),
            ("cache, read_image: false",
             time_steps(md_conf(r, cache, False, kk), True, kk, args.steps)),
        ]  # fmt: skip
    emit(
        f"{host(args.threads)}; pair of {LONG} px JPEGs, long side {r}.\n\n"
        + table(["megadepth item (pair)", "CPU ms", "vs live"],
                [(n, f"{t:.1f}", f"{items[0][1] / t:.1f}x") for n, t in items])
        + "\n\n"
        + table([f"training step (batch 1, {kk} keypoints)", "CPU s", "vs live"],
                [(n, f"{t:.2f}", f"{steps[0][1] / t:.1f}x") for n, t in steps]),
        args.output,
    )  # fmt: skip


if __name__ == "__main__":
    main()
