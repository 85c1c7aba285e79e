"""Cost of a training step on the CPU, per feature type, against the sum of its parts.

    python benchmarks/training.py [--features xfeat aliked disk sift superpoint_open]
                                  [--steps 6] [--batch 4] [--size 640x480]
                                  [--keypoints 512] [--threads 2] [--output table.md]

For each feature type, one process (so that its peak memory is its own) trains LightGlue
(the shipped training architecture: 9 layers, 256-D, 4 heads, input_dim of the features)
with a frozen extractor on homography pairs of real photographs (scikit-image's, warped
by seeded homographies), through the real trainer (``gluefactory.trainer.train``: data
loading, ground truth, loss, backward, Adam, logging every step), and reports:

- **step**: median seconds per optimizer step (the first ``--warmup`` steps dropped);
- **extract**: the frozen extraction of the same batch alone (no_grad, 2 x batch images);
- **match**: LightGlue forward + loss + backward + Adam step alone, on those features
  with their ground truth precomputed;
- **ratio** = step / (extract + match): what the trainer adds (data loading, ground
  truth, logging); the target is <= 1.2;
- **peak RSS**: the process's peak resident memory, and its growth over the baseline
  after imports.

SuperPoint-open has no public weights: random ones are used (the cost is the same).
Missing weights in the cache: the row says so and is skipped.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FEATURES = {
    "xfeat": ({"name": "extractors.xfeat", "detection_threshold": -1}, 64, "xfeat"),
    "aliked": (
        {"name": "extractors.aliked", "detection_threshold": -1},
        128,
        "aliked-n16",
    ),
    "disk": ({"name": "extractors.disk", "detection_threshold": -1}, 128, "disk-depth"),
    "sift": (
        {"name": "extractors.sift", "detection_threshold": 0.0, "nms_radius": 3},
        128,
        None,
    ),
    "superpoint_open": (
        {
            "name": "extractors.superpoint_open",
            "weights": None,
            "detection_threshold": -1,
        },
        256,
        None,
    ),
}


# --------------------------------------------------------------------------- data


def _photos(width: int, height: int):
    import cv2
    from skimage import data

    ims = [data.coffee(), data.chelsea(), data.astronaut(), data.rocket()]
    return [cv2.resize(im, (width, height), interpolation=cv2.INTER_AREA) for im in ims]


def make_dataset_class():
    """A homography-pair dataset over the photographs (registered as ``__main__``)."""
    import cv2
    import torch
    from torch.utils.data import Dataset

    from gluefactory.datasets.base_dataset import BaseDataset
    from gluefactory.geometry.homography import homography_to_center_convention

    class _Pairs(Dataset):
        def __init__(self, conf, num):
            self.conf, self.num = conf, num
            self.images = _photos(conf.width, conf.height)

        def __len__(self):
            return self.num

        def __getitem__(self, idx):
            c, rng = self.conf, np.random.default_rng(idx)
            img = self.images[idx % len(self.images)]
            w, h = c.width, c.height
            corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
            moved = corners + rng.uniform(-0.15, 0.15, (4, 2)).astype(np.float32) * [
                w,
                h,
            ]
            H = cv2.getPerspectiveTransform(corners, moved.astype(np.float32))
            warped = cv2.warpPerspective(
                img, homography_to_center_convention(H), (w, h)
            )

            def view(im):
                return {
                    "image": torch.from_numpy(im).permute(2, 0, 1).float() / 255,
                    "image_size": torch.tensor([float(w), float(h)]),
                }

            return {
                "name": f"p{idx}",
                "scene": "photos",
                "view0": view(img),
                "view1": view(warped),
                "H_0to1": torch.tensor(H, dtype=torch.float32),
            }

    class PhotoPairs(BaseDataset):
        default_conf = {"num": 64, "num_val": 4, "width": 640, "height": 480}

        def _init(self, conf):
            pass

        def get_dataset(self, split):
            return _Pairs(
                self.conf, self.conf.num if split == "train" else self.conf.num_val
            )

    return PhotoPairs


# -------------------------------------------------------------------- one feature


def model_conf(feature: str, keypoints: int) -> dict:
    extractor, dim, _ = FEATURES[feature]
    matcher = {
        "name": "matchers.lightglue",
        "input_dim": dim,
        "descriptor_dim": 256,
        "n_layers": 9,
        "num_heads": 4,
        "flash": False,
        "add_scale_ori": feature == "sift",
    }
    return {
        "name": "two_view_pipeline",
        "extractor": {
            **extractor,
            "max_num_keypoints": keypoints,
            "force_num_keypoints": True,
            "trainable": False,
        },
        "matcher": matcher,
        "ground_truth": {
            "name": "matchers.homography_matcher",
            "th_positive": 3.0,
            "th_negative": 3.0,
        },
    }


def peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def measure_one(args) -> dict:
    import os
    import tempfile

    import torch

    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)
    from gluefactory.models import get_model
    from gluefactory.trainer import step as step_module
    from gluefactory.trainer import train
    from gluefactory.trainer.data import SeededItems, TrainBatches
    from gluefactory.utils.tensor import collate

    sys.modules["__main__"].PhotoPairs = make_dataset_class()
    base_rss = peak_rss_mb()
    w, h = (int(x) for x in args.size.split("x"))
    n_steps = args.warmup + args.steps
    conf = {
        "data": {
            "name": "__main__",
            "batch_size": args.batch,
            "num": args.batch * n_steps,
            "width": w,
            "height": h,
        },
        "model": model_conf(args.one, args.keypoints),
        "train": {
            "epochs": 1,
            "lr": 1e-4,
            "eval_0": False,
            "log_every_iter": 1,
            "eval_every_iter": 10**6,
            "save_every_iter": 10**6,
            "device": "cpu",
            "seed": 0,
        },
    }
    # the run's validation and final checkpoint happen after the last timed step
    ends = []
    original = step_module.Stepper.optimizer_step

    def timed(self, step):
        out = original(self, step)
        ends.append(time.perf_counter())
        return out

    step_module.Stepper.optimizer_step = timed
    os.environ["GLUEFACTORY_OUTPUTS"] = tempfile.mkdtemp(prefix="gf_bench_")
    conf["data"]["num"] = args.batch * n_steps
    train(f"bench_{args.one}", conf)
    step_module.Stepper.optimizer_step = original
    steps = np.diff(ends)[args.warmup - 1 :] if args.warmup else np.diff(ends)
    step_time = float(np.median(steps))
    peak = peak_rss_mb()

    # the parts alone, on one batch of the same data
    dataset = make_dataset_class()(
        {"num": args.batch, "width": w, "height": h}
    ).get_dataset("train")
    order = TrainBatches(len(dataset), args.batch, 0, shuffle=False)
    batch = collate([SeededItems(dataset)[k] for k in next(iter(order))])
    model = get_model("two_view_pipeline")(conf["model"])
    model.train()
    model.extractor.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    ext_t, match_t = [], []
    for _ in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.no_grad():
            feats = [model.extract_view(batch, i) for i in (0, 1)]
        t1 = time.perf_counter()
        data = {
            **batch,
            **{f"{k}{i}": v for i, f in enumerate(feats) for k, v in f.items()},
        }
        with torch.no_grad():
            gt = model.ground_truth(data)
        data = {
            **data,
            **{k if k.startswith("gt_") else f"gt_{k}": v for k, v in gt.items()},
        }
        t2 = time.perf_counter()
        pred = {**data, **model.matcher(data)}
        losses, _ = model.matcher.loss(pred, data)
        losses["total"].mean().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        ext_t.append(t1 - t0)
        match_t.append(t3 - t2)
    ext = statistics.median(ext_t[args.warmup :])
    match = statistics.median(match_t[args.warmup :])
    return {
        "feature": args.one,
        "step_s": step_time,
        "extract_s": ext,
        "match_s": match,
        "ratio": step_time / (ext + match),
        "peak_rss_mb": peak,
        "rss_growth_mb": peak - base_rss,
        "steps_timed": len(steps),
    }


# ------------------------------------------------------------------------- driver


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def missing_weights(feature: str) -> str | None:
    name = FEATURES[feature][2]
    if name is None:
        return None
    from gluefactory.weights import cache_path

    return None if cache_path(name).exists() else f"weights '{name}' not in the cache"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--features", nargs="+", default=list(FEATURES), choices=list(FEATURES)
    )
    p.add_argument("--steps", type=int, default=6, help="timed steps per feature")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", default="640x480")
    p.add_argument("--keypoints", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path)
    p.add_argument("--one", choices=list(FEATURES), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print("RESULT " + json.dumps(measure_one(args)))
        return
    rows = []
    for f in args.features:
        why = missing_weights(f)
        if why:
            rows.append({"feature": f, "skipped": why})
            print(f"{f}: skipped ({why})", file=sys.stderr)
            continue
        cmd = [sys.executable, __file__, "--one", f] + [
            a
            for k in ("steps", "warmup", "batch", "size", "keypoints", "threads")
            for a in (f"--{k}", str(getattr(args, k)))
        ]
        print(f"{f} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        line = next(
            (x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None
        )
        if line is None:
            rows.append(
                {
                    "feature": f,
                    "skipped": "failed: " + out.stderr.strip().splitlines()[-1],
                }
            )
            continue
        rows.append(json.loads(line[len("RESULT ") :]))
    import torch

    head = (
        f"Training step on the CPU, {date.today()}, {cpu_name()}, {args.threads} threads, torch "
        f"{torch.__version__}: batch {args.batch}, {args.size}, {args.keypoints} keypoints, LightGlue "
        f"9 x 256-D x 4 heads, median of {args.steps} steps after {args.warmup}.\n\n"
        "| features | step (s) | extract (s) | match fwd+bwd (s) | step / parts | peak RSS (MB) | RSS growth (MB) |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    body = ""
    for r in rows:
        if "skipped" in r:
            body += f"| {r['feature']} | {r['skipped']} | | | | | |\n"
        else:
            body += (
                f"| {r['feature']} | {r['step_s']:.2f} | {r['extract_s']:.2f} | {r['match_s']:.2f} | "
                f"{r['ratio']:.2f} | {r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} |\n"
            )
    table = head + body
    print(table)
    if args.output:
        args.output.write_text(table)


if __name__ == "__main__":
    main()
