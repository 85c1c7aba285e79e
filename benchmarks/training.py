"""Cost of a training step on the CPU, per feature type, against the sum of its parts.

    python -m benchmarks.training [--features xfeat aliked disk sift superpoint_open]
                                  [--steps 6] [--warmup 2] [--batch 4] [--size 640x480]
                                  [--keypoints 512] [--threads 2] [--output FILE]

For each feature type, ``python -m gluefactory.train`` with the shipped
``<features>+lightglue_homography`` config (LightGlue 9 layers, 256-D, 4 heads, frozen
extractor, ``lg`` photometric augmentation; no gradient checkpointing, no workers) on
homographies of the built-in photographs (``data.data_dir=photos``), run under the peer
driver (:mod:`benchmarks.peer_driver`: optimizer-step end times, peak RSS), and reports:

- **step**: median seconds per optimizer step (the first ``--warmup`` steps dropped);
- **extract**: the frozen extraction of one batch alone (no_grad, 2 x batch images);
- **match**: LightGlue forward + loss + backward + Adam alone, on those features with
  their ground truth precomputed;
- **ratio** = step / (extract + match): what the trainer adds (data, ground truth,
  logging); the target is <= 1.2;
- **peak RSS** of the training process, and its growth over the RSS after importing torch.

SuperPoint-open runs on random weights (the cost is the same). Features whose weights
are not in the cache are skipped.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from .common import STEP_PARTS, Interpreter, emit, host, set_threads, step_parts, table

# feature -> (shipped config, extra overrides, weights that must be in the cache)
FEATURES = {
    "xfeat": ("xfeat+lightglue_homography", [], "xfeat"),
    "aliked": ("aliked+lightglue_homography", [], "aliked-n16"),
    "disk": ("disk+lightglue_homography", [], "disk-depth"),
    "sift": ("sift+lightglue_homography", [], None),
    "superpoint_open": (
        "superpoint-open+lightglue_homography", ["model.extractor.weights=null"], None,
    ),
}  # fmt: skip


def overrides(feature: str, args) -> list[str]:
    """The shipped config, shrunk to ``warmup + steps`` steps of the asked batch."""
    w, h = args.size.split("x")
    steps = args.warmup + args.steps + 1
    return [
        "data.data_dir=photos", "data.image_dir=", "data.image_list=null",
        "data.train_size=null", "data.val_size=1", "data.num_workers=0",
        f"data.batch_size={args.batch}", f"data.homography.patch_shape=[{w},{h}]",
        f"data.items_per_image={math.ceil(steps * args.batch / 8)}",
        f"model.extractor.max_num_keypoints={args.keypoints}",
        "model.extractor.force_num_keypoints=true", "model.matcher.checkpointed=false",
        f"train.max_steps={steps}", "train.epochs=1", "train.eval_0=false",
        "train.log_every_iter=1", "train.eval_every_iter=1000000",
        "train.save_every_iter=1000000", "train.plot=null", "train.seed=0",
        *FEATURES[feature][1],
    ]  # fmt: skip


def parts(feature: str, args) -> tuple[float, float]:
    """Median seconds of the frozen extraction, and of LightGlue's forward, loss,
    backward and Adam step, on one batch, alone (the ground truth not counted)."""
    from gluefactory.datasets import get_dataset
    from gluefactory.models import get_model
    from gluefactory.utils.conf import compose
    from gluefactory.utils.tensor import collate

    conf = compose(FEATURES[feature][0], overrides(feature, args))
    split = get_dataset(conf.data.name)(conf.data).get_dataset("train")
    batch = collate([split[i] for i in range(args.batch)])
    model = get_model(conf.model.name)(conf.model).train()
    model.extractor.eval()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-4)
    runs = [step_parts(model, batch, opt) for _ in range(args.warmup + args.steps)]
    match = [sum(t[k] for k in STEP_PARTS[1:] if k != "ground truth") for t in runs]
    ext = [t["extract"] for t in runs]
    return statistics.median(ext[args.warmup :]), statistics.median(
        match[args.warmup :]
    )


def measure(feature: str, args, work: Path) -> tuple:
    cmd = [
        f"bench_{feature}",
        "--conf",
        FEATURES[feature][0],
        *overrides(feature, args),
    ]
    r = Interpreter.ours(args.threads, work / "outputs").run(
        "gluefactory.train", cmd, "train", work / f"train_{feature}.log"
    )
    step = statistics.median(
        torch.tensor(r["steps"]).diff().tolist()[args.warmup - 1 :]
    )
    ext, match = parts(feature, args)
    return (feature, f"{step:.2f}", f"{ext:.2f}", f"{match:.2f}",
            f"{step / (ext + match):.2f}", f"{r['peak_rss_mb']:.0f}",
            f"{r['peak_rss_mb'] - r['base_rss_mb']:.0f}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--features", nargs="+", default=list(FEATURES), choices=FEATURES)
    p.add_argument("--steps", type=int, default=6, help="timed steps per feature")
    p.add_argument("--warmup", type=int, default=2, help="steps dropped (>= 1)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", default="640x480")
    p.add_argument("--keypoints", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or not re.fullmatch(r"\d+x\d+", args.size):
        p.error(f"--warmup {args.warmup}, --steps {args.steps} (both >= 1) and --size "
                f"{args.size} (WxH)")  # fmt: skip
    set_threads(args.threads)
    from gluefactory.weights import cache_path

    rows = []
    with tempfile.TemporaryDirectory(prefix="gf_bench_train_") as work:
        for f in args.features:
            weights = FEATURES[f][2]
            if weights and not cache_path(weights).exists():
                rows.append(
                    (f, f"skipped: weights '{weights}' not in the cache", *[""] * 5)
                )
                continue
            print(f"{f} ...", file=sys.stderr, flush=True)
            rows.append(measure(f, args, Path(work)))
    head = ["features", "step (s)", "extract (s)", "match fwd+bwd (s)", "step / parts",
            "peak RSS (MB)", "RSS growth (MB)"]  # fmt: skip
    emit(
        f"Training step on the CPU, {host(args.threads)}: batch {args.batch}, "
        f"{args.size}, {args.keypoints} keypoints, LightGlue 9 x 256-D x 4 heads, "
        f"median of {args.steps} steps after {args.warmup}.\n\n" + table(head, rows),
        args.output,
    )


if __name__ == "__main__":
    main()
