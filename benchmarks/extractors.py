"""CPU speed of our extractors next to their reference implementations.

    python -m benchmarks.extractors [--sizes 640x480 1024] [--runs 5] [--threads 2]
                                    [--only xfeat sift ...] [--output FILE]

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
import sys
from functools import partial

import numpy as np
import torch

from .common import emit, host, load_average, set_threads, table, time_alternately

NUM_KPTS = 2048


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


# ----------------------------------------------------------------------- extractors
def ours(name: str, **conf):
    """Our extractor ``name`` (eval mode) as a function of the image."""
    from gluefactory.models import get_model

    torch.manual_seed(0)  # random weights (SuperPoint-open) are always the same
    model = get_model(f"extractors.{name}")(
        {"max_num_keypoints": NUM_KPTS, **conf}
    ).eval()
    return lambda x: model({"image": x})


def kornia_ref(name: str):
    """kornia 0.9.0's extractor on the same weight file, as a function of the image."""
    import kornia.feature as KF

    from gluefactory.weights import load_weights

    if name == "aliked":
        ref = KF.ALIKED(
            "aliked-n16", max_num_keypoints=NUM_KPTS, detection_threshold=0.0
        )
        ref.load_state_dict(load_weights("aliked-n16"), strict=False)
        return ref.eval()
    if name == "disk":
        ref = KF.DISK(desc_dim=128)
        ref.load_state_dict(load_weights("disk-depth")["extractor"])
        return lambda x: ref.eval()(
            x, n=NUM_KPTS, window_size=5, pad_if_not_divisible=True
        )
    ref = KF.XFeat(top_k=NUM_KPTS, detection_threshold=0.05)
    ref.net.load_state_dict(load_weights("xfeat"))
    return ref.eval().detectAndCompute


def opencv_sift(nms_radius: int | None):
    """The plain OpenCV call doing our SIFT's detection: with ``nms_radius`` None OpenCV
    caps the count (``nfeatures``); with an NMS we describe every detection
    (``nfeatures=0``) and keep the best after the NMS."""
    import cv2

    ref = cv2.SIFT_create(nfeatures=NUM_KPTS if nms_radius is None else 0,
                          nOctaveLayers=3, contrastThreshold=0.02, edgeThreshold=10,
                          enable_precise_upscale=True)  # fmt: skip

    def run(x: torch.Tensor):
        rgb = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return ref.detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)

    return run


#: key -> (label, (ours, reference) builder, reference label)
EXTRACTORS = {
    "aliked": ("ALIKED n16", lambda: (ours("aliked", model_name="aliked-n16",
               detection_threshold=0.0), kornia_ref("aliked")), "kornia 0.9.0 ALIKED"),
    "disk": ("DISK", lambda: (ours("disk", detection_threshold=0.0), kornia_ref("disk")),
             "kornia 0.9.0 DISK"),
    "xfeat": ("XFeat", lambda: (ours("xfeat"), kornia_ref("xfeat")), "kornia 0.9.0 XFeat"),
    "sift": ("SIFT (OpenCV, nms_radius None)", lambda: (ours("sift", nms_radius=None),
             opencv_sift(None)), "cv2 SIFT (nfeatures=2048)"),
    "sift_nms": ("SIFT (OpenCV, nms_radius 0: default)", lambda: (ours("sift",
                 nms_radius=0), opencv_sift(0)), "cv2 SIFT (nfeatures=0)"),
    "superpoint_open": ("SuperPoint-open (random weights)", lambda: (
        ours("superpoint_open", weights=None), None), "no reference"),
}  # fmt: skip


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(EXTRACTORS), default=None)
    parser.add_argument("--output", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    images = [load_image(s) for s in args.sizes]
    print(f"load average at start {load_average()}", file=sys.stderr, flush=True)
    rows, skipped = [], []
    for key in args.only or EXTRACTORS:
        label, build, reference = EXTRACTORS[key]
        try:
            ours, ref = build()
        except Exception as e:  # missing module or weights: report and go on
            skipped.append(
                f"{label}: skipped ({type(e).__name__}: {e})".splitlines()[0]
            )
            continue
        for img in images:
            with torch.inference_mode():
                fns = {"ours": partial(ours, img), "ref": ref and partial(ref, img)}
                t = time_alternately(fns, args.runs)
            o, r = t["ours"].median * 1e3, t["ref"] and t["ref"].median * 1e3
            rows.append((label, f"{img.shape[-1]}x{img.shape[-2]}", f"{o:.1f}",
                         reference, f"{r:.1f}" if r else "-",
                         f"{o / r:.2f}" if r else "-"))  # fmt: skip
            print(*rows[-1], sep=" | ", file=sys.stderr, flush=True)
    head = [
        "extractor",
        "size (WxH)",
        "ours (ms)",
        "reference",
        "reference (ms)",
        "ratio",
    ]
    return emit(
        f"CPU: {host(args.threads)} (torch and OpenCV); median of {args.runs} runs; "
        f"{NUM_KPTS} keypoints max; load average at start {load_average()}.\n\n"
        + table(head, rows)
        + f"\n\nLoad average at the end: {load_average()}.\n"
        + "".join(f"\n{s}" for s in skipped),
        args.output,
    )


if __name__ == "__main__":
    main()
