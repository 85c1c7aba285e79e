"""Ours against upstream glue-factory (the "peer"), on identical data, in one run.

    python -m benchmarks.peer --peer PEER [--only eval train keypoints] [--confs CONF ...]
                              [--steps 12] [--warmup 2] [--threads 2] [--output FILE]

The peer is upstream glue-factory built on the CPU by ``build_peer.sh GF_GIT LG_GIT
PEER`` (outside this repository: its own venv, ``data/`` and ``outputs/`` in
``PEER/glue-factory``, the official weights under ``PEER/torch_home``). Nothing of it is imported here: both
libraries run through their own command lines under the same driver
(:mod:`benchmarks.peer_driver`: wall, CPU and model time, optimizer steps, peak RSS).

**eval**: the HPatches protocol on our built-in HPatches-format set, linked into the
peer's ``data/hpatches-sequences-release`` (one link per sequence), the same shipped
config, OpenCV RANSAC at 0.5 px, data loading in the main process. Headline metrics side
by side, with the per-pair agreement of the deterministic ones.

**train**: ``python -m gluefactory.train`` of both, the shipped ALIKED + LightGlue
homography config, batch 4, no workers, no gradient checkpointing, one epoch over
``batch x (warmup + steps)`` images: the scikit-image photographs linked under distinct
names in a ``revisitop1m``-style folder that both read. The median step after ``warmup``
is compared. Ratios are ours / upstream (below 1: we are faster).

**keypoints** (not in the default run): upstream's ALIKED keypoints (its
``extractors.aliked``, run in the peer's venv by ``benchmarks/upstream_aliked.py``)
against ours with ``nms: strict`` (the default, kornia's NMS) and ``nms: simple``
(upstream's), on scikit-image's astronaut and coffee and the Motorcycle left view, the
best 1024 (``detection_threshold: -1``) and threshold 0.2 without a limit. A keypoint is
"the same" when ours minus 0.5 (our pixel convention, docs/extractors.md) lies within
1e-3 px of one of upstream's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from gluefactory.utils.cli import main_wrapper
from gluefactory.utils.errors import UserError

from .common import Interpreter, cpu_name, emit, load_average, table

HEADLINE = [  # (upstream key, label)
    ("mprec@1px", "prec@1px (median)"),
    ("mprec@3px", "prec@3px (median)"),
    ("mnum_matches", "matches (median)"),
    ("mnum_keypoints", "keypoints (median)"),
    *((f"H_error_{e}@{t}px", f"H_error_{e} AUC@{t}px") for e in ("dlt",) for t in (1, 3, 5)),
    ("H_error_dlt_mAA", "H_error_dlt mAA"),
    *((f"H_error_ransac@{t}px", f"H_error_ransac AUC@{t}px") for t in (1, 3, 5)),
    ("H_error_ransac_mAA", "H_error_ransac mAA"),
    ("mransac_inl", "RANSAC inliers (median)"),
    ("mransac_inl%", "RANSAC inlier ratio (median)"),
]  # fmt: skip
PER_PAIR = ["prec@1px", "prec@3px", "num_matches", "num_keypoints", "H_error_dlt"]
# upstream's loader passes prefetch_factor 2 even without workers, which torch rejects
PEER_NO_PREFETCH = "data.prefetch_factor=null"


def link_hpatches(peer: Path, sequences: int | None = None) -> Path:
    """Link our built-in sequences (the first ``sequences``) into the peer's data."""
    from gluefactory.datasets.sources.builtin import ensure_builtin

    src = ensure_builtin("hpatches").resolve()
    dest = peer / "glue-factory" / "data" / "hpatches-sequences-release"
    if dest.exists() and any(
        not (p.is_symlink() and p.resolve().parent == src) for p in dest.iterdir()
    ):
        raise UserError(f"{dest} holds more than links to {src}: move it away first.")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for seq in sorted(p for p in src.iterdir() if p.is_dir())[:sequences]:
        (dest / seq.name).symlink_to(seq)
    return dest


def make_photo_folder(root: Path, peer: Path, n: int) -> Path:
    """A revisitop1m-style folder (``jpg/`` + ``revisitop1m.txt``) of ``n`` distinct
    names (each photograph linked several times), linked into the peer's data."""
    from gluefactory.datasets.sources.photos import ensure_photos

    photos = sorted(ensure_photos().glob("*.png"))
    folder = root / f"photos-revisitop1m-{root.name}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "jpg").mkdir(parents=True)
    names = [f"{i:04d}_{photos[i % len(photos)].name}" for i in range(n)]
    for i, name in enumerate(names):
        (folder / "jpg" / name).symlink_to(photos[i % len(photos)].resolve())
    (folder / "revisitop1m.txt").write_text("\n".join(names) + "\n")
    link = peer / "glue-factory" / "data" / folder.name
    link.unlink(missing_ok=True)
    link.symlink_to(folder.resolve())
    return folder


def both(args, name: str, ours: tuple, upstream: tuple, mode: str) -> dict:
    """Run (module, args) of upstream, then of ours, under the driver."""
    runs = {}
    for who in ("peer", "ours"):
        print(f"{name}: {who} ...", file=sys.stderr, flush=True)
        module, argv = ours if who == "ours" else upstream
        log = args.workdir / f"{name}_{who}.log"
        runs[who] = args.sides[who].run(module, argv, mode, log)
        args.versions[who] = runs[who]["versions"]
    return runs


def eval_one(conf: str, args, linked: Path) -> dict:
    import h5py
    import numpy as np

    tag = f"peer-bench-{args.workdir.name}_{conf}"
    est = ["eval.estimator=opencv", "eval.ransac_th=0.5", "data.num_workers=0"]
    # the whole set as documented; a subset through the peer's links (same files)
    data = "data.data_dir=" + (
        "builtin/hpatches" if args.sequences is None else str(linked)
    )
    head = ["--conf", conf, "--tag", tag, "--overwrite"]
    module = "gluefactory.eval.hpatches"
    runs = both(args, f"eval_{conf}", (module, [*head, data, *est]),
                (module, [*head, *est, PEER_NO_PREFETCH]), "eval")  # fmt: skip
    roots = {"ours": args.outputs, "peer": args.sides["peer"].cwd / "outputs"}
    for who, r in runs.items():
        res = roots[who] / "results" / "hpatches" / tag
        s = r["summaries"] = json.loads((res / "summaries.json").read_text())
        if "H_error_dlt_mAA" not in s and all(
            f"H_error_dlt@{t}px" in s for t in (1, 3, 5)
        ):
            s["H_error_dlt_mAA"] = sum(s[f"H_error_dlt@{t}px"] for t in (1, 3, 5)) / 3
        with h5py.File(res / "results.h5", "r") as f:
            r["per_pair"] = {k: np.asarray(f[k][()], float) for k in PER_PAIR
                             if isinstance(f.get(k), h5py.Dataset)}  # fmt: skip
    return runs


def fmt(v) -> str:
    if not isinstance(v, (int, float)):
        return "-" if v is None else str(v)
    return f"{v:.4f}" if isinstance(v, float) and abs(v) < 10 else f"{v:.1f}"


def ratio_table(head: list[str], rows: list[tuple[str, float, float]]) -> str:
    """Rows of (name, ours, upstream) with their ratio; seconds to 0.1 (steps to 0.01),
    MB to 1."""
    fmt = lambda n, v: (
        f"{v:.0f}" if "MB" in n else f"{v:.2f}" if "step" in n else f"{v:.1f}"
    )  # noqa: E731
    return table([*head, "ratio ours / upstream"],
                 [(n, fmt(n, a), fmt(n, b), f"{a / b:.2f}") for n, a, b in rows])  # fmt: skip


def eval_tables(conf: str, runs: dict) -> str:
    import numpy as np

    ro, rp = runs["ours"], runs["peer"]
    o, p = ro["summaries"], rp["summaries"]
    num = (int, float)
    metric = [(label, fmt(o.get(k)), fmt(p.get(k)),
               fmt(o[k] - p[k] if isinstance(o.get(k), num) and isinstance(p.get(k), num) else None))
              for k, label in HEADLINE]  # fmt: skip
    agree = []
    for k in PER_PAIR:
        a, b = ro["per_pair"].get(k), rp["per_pair"].get(k)
        if a is not None and b is not None and len(a) == len(b):
            fin = np.isfinite(a) & np.isfinite(b)
            d = np.abs(a[fin] - b[fin])
            agree.append(
                (k, len(a), int((~fin).sum()), f"{np.median(d):.4g}", f"{d.max():.4g}")
            )
    calls = {w: ", ".join(f"{k}: {n}, {t:.1f} s" for k, (n, t) in sorted(r["by_class"].items()))
             for w, r in runs.items()}  # fmt: skip
    parts = [
        f"**{conf}**, HPatches protocol on the built-in set, OpenCV RANSAC 0.5 px:\n",
        table(["metric", "ours", "upstream", "ours - upstream"], metric),
    ]
    if agree:
        parts += ["\nPer pair (same pair order), |ours - upstream|:\n", table(
            ["per-pair metric", "pairs", "non-finite in either", "median", "max"], agree)]  # fmt: skip
    parts += ["", ratio_table(["time", "ours (s)", "upstream (s)"], [
        ("process wall (start to exit)", ro["wall_s"], rp["wall_s"]),
        ("models' forward (outermost nn.Module calls)", ro["model_s"], rp["model_s"]),
        ("rest (imports, data, metrics, RANSAC, files)",
         ro["wall_s"] - ro["model_s"], rp["wall_s"] - rp["model_s"]),
        ("process CPU time (user + sys)", ro["cpu_s"], rp["cpu_s"]),
        ("peak RSS (MB)", ro["peak_rss_mb"], rp["peak_rss_mb"]),
    ]), f"\nOutermost module calls (class: calls, seconds): ours {calls['ours']}; upstream "
        f"{calls['peer']} (upstream's CacheLoader, which reads the cached predictions "
        "back, is not counted as model time)."]  # fmt: skip
    return "\n".join(parts) + "\n"


def train_compare(args) -> dict:
    n = args.batch * (args.warmup + args.steps)
    folder = make_photo_folder(args.workdir, args.peer, n + args.batch)
    exp = f"peer-bench-{args.workdir.name}"
    common = [f"data.train_size={n}", f"data.val_size={args.batch}",
              f"data.batch_size={args.batch}", "data.num_workers=0",
              f"model.extractor.max_num_keypoints={args.keypoints}",
              "model.matcher.checkpointed=false", "train.epochs=1",
              "train.log_every_iter=1", "train.eval_every_iter=100000",
              "train.save_every_iter=100000", "train.plot=null"]  # fmt: skip
    for root in (args.outputs, args.peer / "glue-factory" / "outputs"):
        shutil.rmtree(root / "training" / exp, ignore_errors=True)
    ours = [exp, "--conf", "aliked+lightglue_homography", "--no_eval_0",
            f"data.data_dir={folder}", "data.max_image_size=null", *common]  # fmt: skip
    upstream = [exp, "--conf", "gluefactory/configs/aliked+lightglue_homography.yaml",
                "--no_eval_0", f"data.data_dir={folder.name}",
                "data.image_list=revisitop1m.txt", PEER_NO_PREFETCH, *common]  # fmt: skip
    runs = both(args, "train", ("gluefactory.train", ours),
                ("gluefactory.train", upstream), "train")  # fmt: skip
    for who, r in runs.items():
        if len(r["steps"]) < args.warmup + 2:
            raise RuntimeError(f"{who}: only {len(r['steps'])} optimizer steps")
        d = [b - a for a, b in zip(r["steps"], r["steps"][1:])]
        r["step_times"] = d[max(args.warmup - 1, 0) :]
    return runs


def train_table(args, runs: dict) -> str:
    o, p = runs["ours"], runs["peer"]
    so, sp = o["step_times"], p["step_times"]
    rows = [(name, f(so), f(sp)) for name, f in (("median step (s)", statistics.median),
            ("mean step (s)", statistics.mean), ("fastest step (s)", min))]  # fmt: skip
    rows += [("process wall (s)", o["wall_s"], p["wall_s"]),
             ("process CPU time (s)", o["cpu_s"], p["cpu_s"]),
             ("peak RSS (MB)", o["peak_rss_mb"], p["peak_rss_mb"])]  # fmt: skip
    return (
        f"Training step, ALIKED-n16 (frozen) + LightGlue 9 x 256-D x 4 heads, batch "
        f"{args.batch}, 640 x 480, {args.keypoints} keypoints, {len(so)} / {len(sp)} "
        f"steps timed after {args.warmup}:\n\n"
        + ratio_table(["measure", "ours", "upstream"], rows)
        + f"\n| optimizer steps run | {len(o['steps'])} | {len(p['steps'])} | |\n"
    )


KEYPOINT_SETTINGS = {
    "top 1024": {"max_num_keypoints": 1024, "detection_threshold": -1},
    "threshold 0.2": {"max_num_keypoints": -1, "detection_threshold": 0.2},
}


def keypoints_table(args) -> str:
    """Our ALIKED keypoints against upstream's, per setting and image."""
    import numpy as np
    import torch
    from skimage import data

    from gluefactory.models import get_model

    images = {"astronaut": data.astronaut(), "coffee": data.coffee(),
              "motorcycle": data.stereo_motorcycle()[0]}  # fmt: skip
    np.savez(args.workdir / "images.npz", **images)
    upstream = args.workdir / "upstream_aliked.npz"
    r = args.sides["peer"].run(
        str(Path(__file__).with_name("upstream_aliked.py")),
        [args.workdir / "images.npz", upstream, json.dumps(KEYPOINT_SETTINGS)],
        "plain",
        args.workdir / "upstream_aliked.log",
    )
    args.versions["peer"] = r["versions"]
    ref, rows = dict(np.load(upstream)), []
    for nms in ("strict", "simple"):
        for s, conf in KEYPOINT_SETTINGS.items():
            model = get_model("extractors.aliked")({"nms": nms, **conf}).eval()
            for name, im in images.items():
                x = torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255
                with torch.inference_mode():
                    kp = model({"image": x})["keypoints"][0].numpy() - 0.5
                r = ref[f"{s}|{name}"]
                d = np.linalg.norm(kp[:, None] - r[None], axis=-1).min(1)
                same = d < 1e-3
                off = f"{d[same].max():.1e}" if same.any() else "-"
                ratio = f"{same.sum()} ({same.sum() / max(len(r), 1):.1%})"
                rows.append((f"nms: {nms}", s, name, len(kp), len(r), ratio, off))
    head = ["ours", "setting", "image", "ours", "upstream", "same"]
    return table([*head, "max offset of same (px)"], rows) + "\n"


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--peer", type=Path, required=True, help="build_peer.sh's DEST")
    p.add_argument("--only", nargs="+", choices=["eval", "train", "keypoints"],
                   default=["eval", "train"])  # fmt: skip
    p.add_argument("--confs", nargs="+", default=["aliked+lightglue-official"])
    p.add_argument(
        "--sequences", type=int, help="only the first N sequences (smoke test)"
    )
    p.add_argument("--steps", type=int, default=12, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2, help="training steps dropped")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--keypoints", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ours_python", default=sys.executable,
                   help="interpreter for ours (e.g. a venv with the peer's torch)")  # fmt: skip
    p.add_argument("--workdir", type=Path, help="logs, photos, our outputs (default: a "
                   "gf_peer_bench folder in the temporary directory)")  # fmt: skip
    p.add_argument("--output", type=Path, help="also write the tables to this file")
    args = p.parse_args(argv)
    args.workdir = (
        args.workdir or Path(tempfile.gettempdir()) / "gf_peer_bench"
    ).resolve()
    args.peer, args.outputs = args.peer.resolve(), args.workdir / "outputs"
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.sides = {"ours": Interpreter.ours(args.threads, args.outputs, args.ours_python),
                  "peer": Interpreter.peer(args.threads, args.peer)}  # fmt: skip
    args.versions = {"ours": {}, "peer": {}}
    start = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, "
             f"{os.cpu_count()} CPUs, {args.threads} threads each; load average at "
             f"start {load_average()}")  # fmt: skip
    parts = []
    if "eval" in args.only:
        linked = link_hpatches(args.peer, args.sequences)
        parts += [
            eval_tables(conf, eval_one(conf, args, linked)) for conf in args.confs
        ]
    if "train" in args.only:
        parts.append(train_table(args, train_compare(args)))
    if "keypoints" in args.only:
        parts.append(keypoints_table(args))
    versions = "; ".join(f"{'ours' if w == 'ours' else 'upstream'}: " + ", ".join(
        f"{k} {v}" for k, v in args.versions[w].items()) for w in ("ours", "peer")
        if args.versions[w])  # fmt: skip
    parts.insert(0, f"{start}; {versions}\n")
    parts.append(f"Load average at the end: {load_average()}\n")
    emit("\n".join(parts), args.output)


if __name__ == "__main__":
    main()
