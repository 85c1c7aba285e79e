"""Speed of the ONNX export (onnxruntime) against our PyTorch LightGlue, on this CPU.

    python -m benchmarks.deploy_onnx [--keypoints 512 1024 2048] [--repeats 5] [--threads 2]
                              [--output table.md]

ALIKED keypoints of a built-in HPatches-format pair (the top-k of each image, so the
counts are exact) are matched by the official ALIKED-LightGlue, in PyTorch and by the
exported graphs with their runner (:mod:`gluefactory.deploy`), full (9 layers) and
adaptive (early exit and pruning at the default confidences 0.95 / 0.99). Both get the
same number of threads. The matches are checked to agree (>= 99.5 %) before timing;
times are the min and median of ``--repeats`` runs (time.perf_counter), after a
warm-up run. The extractor's CNN is timed the same way at the pair's image size.
(Not ``onnx.py``: run as a script, that name would shadow the ``onnx`` package.)
"""

from __future__ import annotations

import argparse
import functools
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import cv2
import numpy as np
import torch

from gluefactory.datasets.sources.builtin import ensure_builtin
from gluefactory.deploy.export import export_pipeline
from gluefactory.models import get_model
from gluefactory.utils.fs import atomic_write_text

MODES = {"full": (-1, -1), "adaptive": (0.95, 0.99)}


def timed(fn, repeats: int) -> tuple[float, float]:
    """(min, median) seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), float(np.median(times))


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def load_pair(seq: str = "v_coffee", k: int = 3) -> list[torch.Tensor]:
    root = ensure_builtin("hpatches")
    images = []
    for i in (1, k):
        img = cv2.imread(str(root / seq / f"{i}.ppm"))[..., ::-1].copy()
        images.append(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    return images


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keypoints", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = load_pair()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.keypoints:
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
            folder = export_pipeline(model, Path(tmp) / f"n{n}")
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
            counts = tuple(int(f["keypoints"].shape[1]) for f in feats)
            for mode, (depth, width) in MODES.items():
                opts = {"depth_confidence": depth, "width_confidence": width}
                lg = get_model("matchers.lightglue")(
                    {"features": "aliked", **opts}
                ).eval()
                onx = get_model("deploy.onnx")(
                    {"path": str(folder), "num_threads": args.threads, **opts}
                )
                inputs = [
                    data[f"{k}{i}"][0].numpy()
                    for k in ("keypoints", "descriptors")
                    for i in (0, 1)
                ]
                sizes = [data[f"view{i}"]["image_size"][0].numpy() for i in (0, 1)]
                run_onnx = functools.partial(
                    onx.matcher, *inputs, *sizes, **onx.options
                )
                run_torch = functools.partial(_no_grad, lg, data)
                with torch.no_grad():
                    ref = lg(data)
                got = run_onnx()
                m_ref, m_got = ref["matches0"][0].numpy(), got["matches0"]
                agree = ((m_ref >= 0) & (m_ref == m_got)).sum() / max(
                    (m_ref >= 0).sum(), 1
                )
                assert agree >= 0.995, (n, mode, agree)

                t_pt = timed(run_torch, args.repeats)
                t_ox = timed(run_onnx, args.repeats)
                rows.append(
                    (f"{counts[0]}+{counts[1]}", mode, int(ref["stop"][0]),
                     int((m_ref >= 0).sum()), t_pt, t_ox)
                )  # fmt: skip
        # the extractor's CNN at the pair's size
        net = model.extractor.net
        onx = get_model("deploy.onnx")(
            {"path": str(folder), "num_threads": args.threads}
        )
        t_pt = timed(functools.partial(_no_grad, net, images[0]), args.repeats)
        t_ox = timed(functools.partial(onx.extractor.net, images[0]), args.repeats)
        h, w = images[0].shape[-2:]
        rows.append((f"{w}x{h} image", "ALIKED CNN", "", "", t_pt, t_ox))
    lines = [
        f"CPU: {cpu_name()}, {args.threads} threads, {date.today().isoformat()}, "
        f"torch {torch.__version__}, onnxruntime {_ort_version()}; "
        f"min / median of {args.repeats} runs, ms",
        "",
        "| keypoints | mode | layers | matches | PyTorch | onnxruntime | PyTorch / ORT (median) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kp, mode, stop, matches, (pmin, pmed), (omin, omed) in rows:
        lines.append(
            f"| {kp} | {mode} | {stop} | {matches} | {1e3 * pmin:.0f} / {1e3 * pmed:.0f} "
            f"| {1e3 * omin:.0f} / {1e3 * omed:.0f} | {pmed / omed:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.output:
        atomic_write_text(args.output, table + "\n")
    return table


def _no_grad(fn, *args):
    with torch.no_grad():
        return fn(*args)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


if __name__ == "__main__":
    main()
