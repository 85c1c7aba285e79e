"""Speed of our LightGlue next to the reference (kornia 0.9.0's LightGlue).

    python benchmarks/lightglue.py [--sizes 512 1024 2048] [--runs 5] [--threads 2]
                                   [--device cpu|cuda] [--batch 8] [--output table.md]

Both matchers use the official ALIKED-LightGlue weights (the same file) and get the
same inputs: ALIKED-n16 features (kornia's extractor, top-2048 by score, then the
best ``n`` for each size) of a real photograph pair, the Middlebury Motorcycle stereo
pair shipped with scikit-image. Settings: *default* (full depth and width:
depth_confidence -1, width_confidence -1) and *adaptive* (0.95 / 0.99; kornia keeps its
own per-device pruning thresholds, -1 = always on CPU). Times are milliseconds per pair,
median of ``--runs`` after one warm-up call, ours and the reference called alternately
so that both see the same machine load. Batch throughput: ``--batch`` pairs of unequal
keypoint counts (per image, the best k of the features, k drawn in 75-100% of
``--batch-kpts``), ours in one padded, masked batch, kornia looping over the pairs (it
cannot batch pairs that prune, and padding would change its results).

The ratio of the minima is reported next to that of the medians (single runs can stall
on a shared machine). Without kornia the reference columns are empty; without the
weights, random ones are used (adaptive timings are then meaningless and flagged).
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import time
from datetime import date
from functools import partial

import torch

MAX_KPTS = 2048


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def features(device: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """ALIKED keypoints (centre convention, as kornia returns them; both matchers get the
    same numbers), descriptors and (w, h) of the two views, sorted by score."""
    from skimage.data import stereo_motorcycle

    from gluefactory.weights import load_weights

    left, right, _ = stereo_motorcycle()
    try:
        import kornia.feature as kf
    except ImportError:
        return synthetic(left.shape[1], left.shape[0])
    net = kf.ALIKED(
        model_name="aliked-n16", max_num_keypoints=MAX_KPTS, detection_threshold=0
    )
    net.load_state_dict(load_weights("aliked-n16"), strict=False)
    net.eval()
    out = []
    with torch.inference_mode():
        for img in (left, right):
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            f = net(x)[0]
            order = torch.argsort(f.keypoint_scores.reshape(-1), descending=True)
            size = torch.tensor([x.shape[-1], x.shape[-2]], dtype=torch.float32)
            out.append((f.keypoints[order].clone(), f.descriptors[order].clone(), size))
    return [tuple(t.to(device) for t in f) for f in out]


def synthetic(w: int, h: int):
    """Fallback without kornia: random keypoints, noisy-copy descriptors."""
    g = torch.Generator().manual_seed(0)
    size = torch.tensor([float(w), float(h)])
    k0 = torch.rand(MAX_KPTS, 2, generator=g) * (size - 1)
    d0 = torch.nn.functional.normalize(torch.randn(MAX_KPTS, 128, generator=g), dim=-1)
    perm = torch.randperm(MAX_KPTS, generator=g)
    k1 = (
        (k0[perm] + torch.randn(MAX_KPTS, 2, generator=g))
        .clamp(min=0)
        .minimum(size - 1)
    )
    d1 = torch.nn.functional.normalize(
        d0[perm] + 0.1 * torch.randn(MAX_KPTS, 128, generator=g), dim=-1
    )
    return [(k0, d0, size), (k1, d1, size)]


def official_state() -> dict | None:
    from gluefactory.weights import WeightsError, load_weights

    try:
        return load_weights("aliked-lightglue")
    except WeightsError as e:
        print(f"[no official weights: {e}; random weights]", file=sys.stderr)
        return None


def build_ours(settings: dict, state: dict | None, device: str, mp: bool):
    from gluefactory.models.matchers.lightglue import LightGlue

    model = LightGlue({"input_dim": 128, "mp": mp, **settings})
    if state is not None:
        model.load_weights(state)
    return model.eval().to(device)


def build_reference(settings: dict, state: dict | None, device: str):
    try:
        import kornia.feature as kf
    except ImportError:
        return None
    model = kf.LightGlue(features=None, input_dim=128, filter_threshold=0.1, **settings)
    if state is not None:
        state = {
            re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
            for k, v in state.items()
            if not re.fullmatch(r"log_assignment\.\d+\.r", k)
        }
        model.load_state_dict(state, strict=False)
    return model.eval().to(device)


def ours_input(f0, f1, n0, n1):
    return {
        "keypoints0": f0[0][None, :n0],
        "descriptors0": f0[1][None, :n0],
        "keypoints1": f1[0][None, :n1],
        "descriptors1": f1[1][None, :n1],
        "view0": {"image_size": f0[2][None]},
        "view1": {"image_size": f1[2][None]},
    }


def ref_input(f0, f1, n0, n1):
    return {
        "image0": {
            "keypoints": f0[0][None, :n0],
            "descriptors": f0[1][None, :n0],
            "image_size": f0[2][None],
        },
        "image1": {
            "keypoints": f1[0][None, :n1],
            "descriptors": f1[1][None, :n1],
            "image_size": f1[2][None],
        },
    }


def batch_input(f0, f1, counts: list[tuple[int, int]]) -> dict:
    """Pairs of unequal counts, padded to the largest and flagged with keypoint masks."""
    b = len(counts)
    M, N = max(c[0] for c in counts), max(c[1] for c in counts)
    dev = f0[0].device
    out = {
        "keypoints0": torch.zeros(b, M, 2, device=dev),
        "descriptors0": torch.zeros(b, M, f0[1].shape[-1], device=dev),
        "keypoints1": torch.zeros(b, N, 2, device=dev),
        "descriptors1": torch.zeros(b, N, f1[1].shape[-1], device=dev),
        "keypoint_mask0": torch.zeros(b, M, dtype=torch.bool, device=dev),
        "keypoint_mask1": torch.zeros(b, N, dtype=torch.bool, device=dev),
        "view0": {"image_size": f0[2][None].expand(b, 2)},
        "view1": {"image_size": f1[2][None].expand(b, 2)},
    }
    for i, (m, n) in enumerate(counts):
        out["keypoints0"][i, :m], out["descriptors0"][i, :m] = f0[0][:m], f0[1][:m]
        out["keypoints1"][i, :n], out["descriptors1"][i, :n] = f1[0][:n], f1[1][:n]
        out["keypoint_mask0"][i, :m] = True
        out["keypoint_mask1"][i, :n] = True
    return out


def loop(model, inputs: list[dict]) -> None:
    for x in inputs:
        model(x)


def timed(fn, device: str) -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def compare(ours_fn, ref_fn, runs: int, device: str):
    """(median, min) seconds of each, called alternately after one warm-up call.

    The minimum is reported too: on a shared machine single runs can stall.
    """
    with torch.inference_mode():
        ours_fn()
        if ref_fn is not None:
            ref_fn()
        t_ours, t_ref = [], []
        for _ in range(runs):
            t_ours.append(timed(ours_fn, device))
            if ref_fn is not None:
                t_ref.append(timed(ref_fn, device))
    stats = lambda t: (statistics.median(t), min(t)) if t else (None, None)  # noqa: E731
    return stats(t_ours), stats(t_ref)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batch-kpts", type=int, default=1024)
    parser.add_argument("--mp", action="store_true", help="ours with autocast")
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")
    start = time.time()
    state = official_state()
    feats = features(args.device)
    f0, f1 = feats
    settings = {
        "default": {"depth_confidence": -1, "width_confidence": -1},
        "adaptive": {"depth_confidence": 0.95, "width_confidence": 0.99},
    }
    rows = [
        "| setting | keypoints | ours (ms) | kornia 0.9.0 (ms) | ratio | ratio of minima "
        "| ours: layers run, pruned |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in settings.items():
        ours = build_ours(s, state, args.device, args.mp)
        ref = build_reference(s, state, args.device)
        for n in args.sizes:
            oi, ri = ours_input(f0, f1, n, n), ref_input(f0, f1, n, n)
            t_o, t_r = compare(
                partial(ours, oi),
                partial(ref, ri) if ref else None,
                args.runs,
                args.device,
            )
            with torch.inference_mode():
                out = ours(oi)
            stats = (
                f"{int(out['stop'][0])}, {100 * float(out['pruned_fraction'][0]):.0f}%"
            )
            (t_o, min_o), (t_r, min_r) = t_o, t_r
            ref_ms = f"{1e3 * t_r:.1f}" if t_r else "-"
            ratio = f"{t_o / t_r:.2f}" if t_r else "-"
            ratio_min = f"{min_o / min_r:.2f}" if t_r else "-"
            rows.append(
                f"| {name} | {n} | {1e3 * t_o:.1f} | {ref_ms} | {ratio} | {ratio_min} "
                f"| {stats} |"
            )
            print(rows[-1], flush=True)

    g = torch.Generator().manual_seed(0)
    lo = int(0.75 * args.batch_kpts)
    counts = [
        tuple(int(c) for c in torch.randint(lo, args.batch_kpts + 1, (2,), generator=g))
        for _ in range(args.batch)
    ]
    brows = [
        "| setting | batch | ours batched (pairs/s) | kornia looped (pairs/s) | time ratio |",
        "|---|---|---|---|---|",
    ]
    for name, s in settings.items():
        ours = build_ours(s, state, args.device, args.mp)
        ref = build_reference(s, state, args.device)
        bi = batch_input(f0, f1, counts)
        singles = [ref_input(f0, f1, m, n) for m, n in counts]
        t_o, t_r = compare(
            partial(ours, bi),
            partial(loop, ref, singles) if ref else None,
            args.batch_runs,
            args.device,
        )
        (t_o, _), (t_r, _) = t_o, t_r
        ref_ps = f"{args.batch / t_r:.2f}" if t_r else "-"
        ratio = f"{t_o / t_r:.2f}" if t_r else "-"
        brows.append(
            f"| {name} | {args.batch} x {lo}-{args.batch_kpts} | "
            f"{args.batch / t_o:.2f} | {ref_ps} | {ratio} |"
        )
        print(brows[-1], flush=True)

    dev = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    header = (
        f"Device: {args.device} ({dev or 'unknown'}), {args.threads} threads, torch "
        f"{torch.__version__}, {date.today()}, runs {args.runs} (batch "
        f"{args.batch_runs}), weights {'official ALIKED' if state else 'RANDOM'}, "
        f"ours mp={args.mp}. Total {time.time() - start:.0f} s."
    )
    table = "\n".join([header, "", *rows, "", *brows]) + "\n"
    print("\n" + table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
