"""Speed of our LightGlue next to the reference (kornia 0.9.0's LightGlue).

    python -m benchmarks.lightglue [--sizes 512 1024 2048] [--runs 5] [--threads 2]
                                   [--device cpu|cuda] [--batch 8] [--output FILE]

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
on a shared machine). kornia (the ``reference`` extra) is required; without the
official weights random ones are used (adaptive timings are then meaningless and
flagged).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from functools import partial

import torch

from .common import emit, host, table, time_alternately

MAX_KPTS = 2048


def features(device: str) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """ALIKED keypoints (centre convention, as kornia returns them; both matchers get the
    same numbers), descriptors and (w, h) of the two views, sorted by score."""
    from skimage.data import stereo_motorcycle

    from .extractors import kornia_ref

    left, right, _ = stereo_motorcycle()
    try:
        net = kornia_ref("aliked")  # top-2048, threshold 0
    except ImportError as e:
        raise SystemExit(
            f"benchmarks.lightglue needs kornia ({e}): pip install -e '.[reference]'"
        ) from e
    out = []
    with torch.inference_mode():
        for img in (left, right):
            x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
            f = net(x)[0]
            order = torch.argsort(f.keypoint_scores.reshape(-1), descending=True)
            size = torch.tensor([x.shape[-1], x.shape[-2]], dtype=torch.float32)
            out.append((f.keypoints[order].clone(), f.descriptors[order].clone(), size))
    return [tuple(t.to(device) for t in f) for f in out]


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
    import kornia.feature as kf

    model = kf.LightGlue(features=None, input_dim=128, filter_threshold=0.1, **settings)
    if state is not None:
        state = {
            re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
            for k, v in state.items()
            if not re.fullmatch(r"log_assignment\.\d+\.r", k)
        }
        model.load_state_dict(state, strict=False)
    return model.eval().to(device)


def ours_input(f0, f1, counts: list[tuple[int, int]]) -> dict:
    """Pairs of (m, n) keypoints; several: padded to the largest, with keypoint masks."""
    out = {"view0": {"image_size": f0[2][None].expand(len(counts), 2)},
           "view1": {"image_size": f1[2][None].expand(len(counts), 2)}}  # fmt: skip
    for i, f in enumerate((f0, f1)):
        n = max(c[i] for c in counts)
        out[f"keypoints{i}"] = f[0].new_zeros(len(counts), n, 2)
        out[f"descriptors{i}"] = f[1].new_zeros(len(counts), n, f[1].shape[-1])
        out[f"keypoint_mask{i}"] = f[0].new_zeros(len(counts), n, dtype=torch.bool)
        for b, c in enumerate(counts):
            out[f"keypoints{i}"][b, : c[i]] = f[0][: c[i]]
            out[f"descriptors{i}"][b, : c[i]] = f[1][: c[i]]
            out[f"keypoint_mask{i}"][b, : c[i]] = True
    if len(counts) == 1:  # one pair: no padding, no masks (the plain call)
        del out["keypoint_mask0"], out["keypoint_mask1"]
    return out


def ref_input(f0, f1, n0, n1):
    view = lambda f, n: {"keypoints": f[0][None, :n], "descriptors": f[1][None, :n],
                         "image_size": f[2][None]}  # fmt: skip  # noqa: E731
    return {"image0": view(f0, n0), "image1": view(f1, n1)}


def loop(model, inputs: list[dict]) -> None:
    for x in inputs:
        model(x)


def compare(ours_fn, ref_fn, runs: int, device: str):
    """Timings of both, called alternately."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    with torch.inference_mode():
        t = time_alternately({"ours": ours_fn, "ref": ref_fn}, runs, sync)
    return t["ours"], t["ref"]


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
    start, state = time.time(), official_state()
    f0, f1 = features(args.device)
    settings = {
        "default": {"depth_confidence": -1, "width_confidence": -1},
        "adaptive": {"depth_confidence": 0.95, "width_confidence": 0.99},
    }
    g = torch.Generator().manual_seed(0)
    lo = int(0.75 * args.batch_kpts)
    counts = [tuple(int(c) for c in torch.randint(lo, args.batch_kpts + 1, (2,), generator=g))
              for _ in range(args.batch)]  # fmt: skip
    rows, brows = [], []
    for name, s in settings.items():
        ours = build_ours(s, state, args.device, args.mp)
        ref = build_reference(s, state, args.device)
        for n in args.sizes:
            oi = ours_input(f0, f1, [(n, n)])
            t_o, t_r = compare(partial(ours, oi), partial(ref, ref_input(f0, f1, n, n)),
                               args.runs, args.device)  # fmt: skip
            with torch.inference_mode():
                out = ours(oi)
            rows.append((name, n, f"{1e3 * t_o.median:.1f}",
                         f"{1e3 * t_r.median:.1f}",
                         f"{t_o.median / t_r.median:.2f}",
                         f"{t_o.min / t_r.min:.2f}",
                         f"{int(out['stop'][0])}, {100 * float(out['pruned_fraction'][0]):.0f}%"))  # fmt: skip
            print(*rows[-1], sep=" | ", file=sys.stderr, flush=True)
        singles = [ref_input(f0, f1, m, n) for m, n in counts]
        t_o, t_r = compare(partial(ours, ours_input(f0, f1, counts)),
                           partial(loop, ref, singles), args.batch_runs, args.device)  # fmt: skip
        brows.append((name, f"{args.batch} x {lo}-{args.batch_kpts}",
                      f"{args.batch / t_o.median:.2f}",
                      f"{args.batch / t_r.median:.2f}",
                      f"{t_o.median / t_r.median:.2f}"))  # fmt: skip
    gpu = f"cuda ({torch.cuda.get_device_name()}), " if args.device == "cuda" else ""
    emit(
        f"Device: {gpu}{host(args.threads)}, runs {args.runs} (batch "
        f"{args.batch_runs}), weights {'official ALIKED' if state else 'RANDOM'}, ours "
        f"mp={args.mp}. Total {time.time() - start:.0f} s.\n\n"
        + table(["setting", "keypoints", "ours (ms)", "kornia 0.9.0 (ms)", "ratio",
                 "ratio of minima", "ours: layers run, pruned"], rows) + "\n\n"
        + table(["setting", "batch", "ours batched (pairs/s)", "kornia looped (pairs/s)",
                 "time ratio"], brows),
        args.output,
    )  # fmt: skip


if __name__ == "__main__":
    main()
