"""Speed of the ONNX export (onnxruntime + NumPy) against our PyTorch path, on this CPU.

    python -m benchmarks.deploy_onnx [--keypoints 512 1024 2048] [--runs 5] [--threads 2]
                                     [--output table.md]

Official ALIKED-LightGlue on a built-in HPatches-format pair, exported with
:func:`gluefactory.deploy.export_pipeline` at each keypoint count (top-k, so the counts
are exact). Rows:

- the matcher alone (the same ALIKED keypoints), full (9 layers) and adaptive (early
  exit and pruning at the default confidences 0.95 / 0.99);
- the extractor alone (its complete graph: CNN, selection, refinement, SDDH) on one
  image;
- the whole pair, image to matches (``deploy.onnx`` against ``two_view_pipeline``).

Both sides get the same number of threads; the matches are checked to agree
(>= 99.5 %) before timing; min / median of ``--runs`` runs after a warm-up, the two
sides timed alternately (:func:`benchmarks.common.time_alternately`) so that they see
the same load. (Not ``onnx.py``: run as a script, that name would shadow the ``onnx``
package.)
"""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import (
    emit,
    host,
    load_average,
    set_threads,
    table,
    time_alternately,
)
from gluefactory.datasets.sources.builtin import ensure_builtin
from gluefactory.deploy.export import export_pipeline
from gluefactory.models import get_model

MODES = {"full": (-1, -1), "adaptive": (0.95, 0.99)}
HEAD = ("keypoints", "what", "mode", "layers", "matches", "PyTorch ms",
        "onnxruntime ms", "PyTorch / ORT (median)")  # fmt: skip


def load_pair(seq: str = "v_coffee", k: int = 3) -> list[torch.Tensor]:
    root = ensure_builtin("hpatches")
    images = []
    for i in (1, k):
        img = cv2.imread(str(root / seq / f"{i}.ppm"))[..., ::-1].copy()
        images.append(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    return images


def _agreement(ref: np.ndarray, got: np.ndarray) -> float:
    return float(((ref >= 0) & (ref == got)).sum() / max((ref >= 0).sum(), 1))


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def _row(n, what, mode, stop, matches, times) -> tuple:
    pt, ox = times["torch"], times["onnx"]
    return (
        n, what, mode, stop, matches,
        f"{1e3 * pt.min:.0f} / {1e3 * pt.median:.0f}",
        f"{1e3 * ox.min:.0f} / {1e3 * ox.median:.0f}",
        f"{pt.median / ox.median:.2f}",
    )  # fmt: skip


def measure(n: int, images, folder: Path, threads: int, runs: int) -> list[tuple]:
    """The rows of one keypoint count."""
    conf = {
        "name": "two_view_pipeline",
        "extractor": {
            "name": "extractors.aliked",
            "max_num_keypoints": n,
            "detection_threshold": -1,
            "nms_radius": 1,  # enough maxima for 2048 per image
        },
        "matcher": {"name": "matchers.lightglue", "features": "aliked"},
    }
    model = get_model("two_view_pipeline")(conf).eval()
    export_pipeline(model, folder)
    with torch.no_grad():
        feats = [model.extractor({"image": im}) for im in images]
    data = {
        f"{k}{i}": f[k]
        for i, f in enumerate(feats)
        for k in ("keypoints", "descriptors")
    }
    for i, im in enumerate(images):
        size = torch.tensor([[im.shape[-1], im.shape[-2]]], dtype=torch.float32)
        data[f"view{i}"] = {"image_size": size}
    label = "+".join(str(int(f["keypoints"].shape[1])) for f in feats)
    rows = []
    for mode, (depth, width) in MODES.items():
        opts = {"depth_confidence": depth, "width_confidence": width}
        lg = get_model("matchers.lightglue")({"features": "aliked", **opts}).eval()
        onx = get_model("deploy.onnx")(
            {"path": str(folder), "num_threads": threads, **opts}
        )
        inputs = [
            data[f"{k}{i}"][0].numpy()
            for k in ("keypoints", "descriptors")
            for i in (0, 1)
        ]
        sizes = [data[f"view{i}"]["image_size"][0].numpy() for i in (0, 1)]
        run_onnx = functools.partial(onx.matcher, *inputs, *sizes, **onx.options)
        ref = _no_grad(lg, data)
        agree = _agreement(ref["matches0"][0].numpy(), run_onnx()["matches0"])
        assert agree >= 0.995, (n, mode, agree)
        times = time_alternately(
            {"torch": functools.partial(_no_grad, lg, data), "onnx": run_onnx}, runs
        )
        matches = int((ref["matches0"] >= 0).sum())
        rows.append(_row(label, "matcher", mode, int(ref["stop"][0]), matches, times))
    # the extractor alone, and the whole pair (full: the export's LightGlue defaults)
    onx = get_model("deploy.onnx")({"path": str(folder), "num_threads": threads})
    image = images[0][0].numpy()
    times = time_alternately(
        {"torch": functools.partial(_no_grad, model.extractor, {"image": images[0]}),
         "onnx": functools.partial(onx.extractor, image)}, runs,
    )  # fmt: skip
    h, w = image.shape[-2:]
    rows.append(_row(n, f"extractor {w}x{h}", "", "", "", times))
    pair = {f"view{i}": {"image": im} for i, im in enumerate(images)}
    ref, got = _no_grad(model, pair), onx(pair)
    matches = int((ref["matches0"] >= 0).sum())
    assert abs(int((got["matches0"] >= 0).sum()) - matches) <= 0.005 * matches + 1
    times = time_alternately(
        {"torch": functools.partial(_no_grad, model, pair), "onnx": functools.partial(onx, pair)},
        runs,
    )  # fmt: skip
    rows.append(_row(label, "image pair", "full", int(ref["stop"][0]), matches, times))
    return rows


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keypoints", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    import onnxruntime

    images = load_pair()
    load_start = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.keypoints:
            rows += measure(n, images, Path(tmp) / f"n{n}", args.threads, args.runs)
    text = (
        f"{host(args.threads)}, onnxruntime {onnxruntime.__version__}; load average "
        f"at the start {load_start}, at the end {load_average()}; min / median of "
        f"{args.runs} runs\n\n" + table(HEAD, rows)
    )
    return emit(text, args.output)


if __name__ == "__main__":
    main()
