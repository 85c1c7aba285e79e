"""CPU speed of our extractors next to their reference implementations.

    python benchmarks/extractors.py [--sizes 640x480 1024] [--runs 5] [--threads 2]
                                    [--only xfeat sift ...] [--output table.md]

For each extractor, milliseconds per image (median of ``--runs`` after a warm-up
call; ours and the reference alternate so that both see the same machine load) on a
real photograph (the Middlebury Motorcycle view shipped with scikit-image) resized to
each size (``WxH``, or a single number for the long side, aspect kept). References
(kornia 0.9.0, loading the same weight files offline; raw OpenCV for SIFT):

- ALIKED n16 (2048 keypoints, top-k) vs ``kornia.feature.ALIKED``;
- DISK (2048, top-k, window 5) vs ``kornia.feature.DISK``;
- XFeat (2048, threshold 0.05) vs ``kornia.feature.XFeat.detectAndCompute``;
- SIFT (2048, RootSIFT) vs ``cv2.SIFT.detectAndCompute`` with the same settings on the
  uint8 grey image (converted with ``cv2.cvtColor``, included in its time), once
  without NMS (OpenCV caps the count: ``nfeatures=2048``) and once with the default
  ``nms_radius`` 0 (every detection is described: ``nfeatures=0``);
- SuperPoint-open on random weights (2048): no reference.

Weights: ``GLUEFACTORY_WEIGHTS`` must hold (or be able to fetch) aliked-n16, disk-depth
and xfeat. Extractors whose module or weights are missing are reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import torch

NUM_KPTS = 2048


def cpu_name() -> str:
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def load_image(size: str) -> torch.Tensor:
    """The Motorcycle left view (real photo), resized: (1, 3, H, W) float in [0, 1]."""
    import cv2
    from skimage.data import stereo_motorcycle

    img = stereo_motorcycle()[0]
    h, w = img.shape[:2]
    if "x" in size:
        w2, h2 = (int(v) for v in size.split("x"))
    else:
        s = int(size) / max(h, w)
        w2, h2 = round(w * s), round(h * s)
    img = cv2.resize(img, (w2, h2), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255


def time_pair(
    ours: Callable[[torch.Tensor], object],
    ref: Callable[[torch.Tensor], object] | None,
    image: torch.Tensor,
    runs: int,
) -> tuple[float, float | None]:
    """Median ms of ``ours(image)`` and ``ref(image)``, called alternately after one
    warm-up each."""
    with torch.inference_mode():
        ours(image)  # warm-up
        if ref is not None:
            ref(image)
        t_ours, t_ref = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            ours(image)
            t_ours.append(time.perf_counter() - t0)
            if ref is not None:
                t0 = time.perf_counter()
                ref(image)
                t_ref.append(time.perf_counter() - t0)
    med_ref = statistics.median(t_ref) * 1e3 if t_ref else None
    return statistics.median(t_ours) * 1e3, med_ref


# ----------------------------------------------------------------------- extractors
def build_aliked():
    import kornia.feature as KF

    from gluefactory.models import get_model
    from gluefactory.weights import load_weights

    conf = {"model_name": "aliked-n16", "max_num_keypoints": NUM_KPTS}
    ours = get_model("extractors.aliked")({**conf, "detection_threshold": 0.0}).eval()
    ref = KF.ALIKED("aliked-n16", max_num_keypoints=NUM_KPTS, detection_threshold=0.0)
    ref.load_state_dict(load_weights("aliked-n16"), strict=False)
    ref.eval()
    return lambda x: ours({"image": x}), lambda x: ref(x)


def build_disk():
    import kornia.feature as KF

    from gluefactory.models import get_model
    from gluefactory.weights import load_weights

    ours = get_model("extractors.disk")(
        {"max_num_keypoints": NUM_KPTS, "detection_threshold": 0.0}
    ).eval()
    ref = KF.DISK(desc_dim=128)
    ref.load_state_dict(load_weights("disk-depth")["extractor"])
    ref.eval()
    return (
        lambda x: ours({"image": x}),
        lambda x: ref(x, n=NUM_KPTS, window_size=5, pad_if_not_divisible=True),
    )


def build_xfeat():
    import kornia.feature as KF

    from gluefactory.models import get_model
    from gluefactory.weights import load_weights

    ours = get_model("extractors.xfeat")({"max_num_keypoints": NUM_KPTS}).eval()
    ref = KF.XFeat(top_k=NUM_KPTS, detection_threshold=0.05)
    ref.net.load_state_dict(load_weights("xfeat"))
    ref.eval()
    return lambda x: ours({"image": x}), lambda x: ref.detectAndCompute(x)


def build_sift(nms_radius: int | None):
    """Ours vs the plain OpenCV call doing the same detection: with ``nms_radius``
    None OpenCV caps the count (``nfeatures``); with an NMS we describe every
    detection (``nfeatures=0``) and keep the best after the NMS."""
    import cv2

    from gluefactory.models import get_model

    conf = {"max_num_keypoints": NUM_KPTS, "nms_radius": nms_radius}
    ours = get_model("extractors.sift")(conf)
    ref = cv2.SIFT_create(
        nfeatures=NUM_KPTS if nms_radius is None else 0,
        nOctaveLayers=3,
        contrastThreshold=0.02,
        edgeThreshold=10,
        enable_precise_upscale=True,
    )

    def run_ref(x: torch.Tensor):
        rgb = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return ref.detectAndCompute(grey, None)

    return lambda x: ours({"image": x}), run_ref


def build_superpoint_open():
    from gluefactory.models import get_model

    torch.manual_seed(0)
    ours = get_model("extractors.superpoint_open")(
        {"weights": None, "max_num_keypoints": NUM_KPTS}
    ).eval()
    return lambda x: ours({"image": x}), None


EXTRACTORS = {
    "aliked": ("ALIKED n16", build_aliked),
    "disk": ("DISK", build_disk),
    "xfeat": ("XFeat", build_xfeat),
    "sift": ("SIFT (OpenCV, nms_radius None)", lambda: build_sift(None)),
    "sift_nms": ("SIFT (OpenCV, nms_radius 0: default)", lambda: build_sift(0)),
    "superpoint_open": ("SuperPoint-open (random weights)", build_superpoint_open),
}
REFERENCE = {
    "aliked": "kornia 0.9.0 ALIKED",
    "disk": "kornia 0.9.0 DISK",
    "xfeat": "kornia 0.9.0 XFeat",
    "sift": "cv2 SIFT (nfeatures=2048)",
    "sift_nms": "cv2 SIFT (nfeatures=0)",
    "superpoint_open": "no reference",
}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(EXTRACTORS), default=None)
    parser.add_argument("--output", default=None, help="also write the table here")
    args = parser.parse_args(argv)

    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    images = {s: load_image(s) for s in args.sizes}

    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        f"CPU: {cpu_name()} ({os.cpu_count()} cores), {args.threads} threads (torch "
        f"and OpenCV), torch {torch.__version__}, OpenCV {cv2.__version__}, "
        f"{date.today()}; median of {args.runs} runs; {NUM_KPTS} keypoints max; "
        f"load average at start {load}.",
        "",
        "| extractor | size (WxH) | ours (ms) | reference | reference (ms) | ratio |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    skipped = []
    for key in args.only or EXTRACTORS:
        label, build = EXTRACTORS[key]
        try:
            ours, ref = build()
        except Exception as e:  # missing module or weights: report and go on
            skipped.append(
                f"{label}: skipped ({type(e).__name__}: {e})".splitlines()[0]
            )
            print(skipped[-1], file=sys.stderr, flush=True)
            continue
        for img in images.values():
            t_ours, t_ref = time_pair(ours, ref, img, args.runs)
            shape = f"{img.shape[-1]}x{img.shape[-2]}"
            if t_ref is None:
                row = f"| {label} | {shape} | {t_ours:.1f} | {REFERENCE[key]} | - | - |"
            else:
                row = (
                    f"| {label} | {shape} | {t_ours:.1f} | {REFERENCE[key]} | "
                    f"{t_ref:.1f} | {t_ours / t_ref:.2f} |"
                )
            lines.append(row)
            print(row, flush=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines += ["", f"Load average at the end: {load}."]
    print(lines[-1], flush=True)
    if skipped:
        lines += ["", *skipped]
    table = "\n".join(lines)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table + "\n")
    return table


if __name__ == "__main__":
    main()
