"""Ours against upstream glue-factory (the "peer"), on identical data, in one run.

    python benchmarks/peer.py --peer /work/peer [--only eval train]
                              [--confs aliked+lightglue-official disk+lightglue-official]
                              [--steps 12] [--warmup 2] [--threads 2] [--output table.md]

The peer is upstream glue-factory built on the CPU by ``../shared/peer/build_peer.sh
GF_GIT LG_GIT PEER`` (its own venv, its ``data/`` and ``outputs/`` inside
``PEER/glue-factory``, the official weights under ``PEER/torch_home``). Nothing of it is
imported here: both libraries run as separate processes through their own command lines,
each under the same small driver (``DRIVER`` below) that records

- the process wall time (measured here, interpreter start included),
- **eval**: the time spent inside the outermost ``torch.nn.Module`` calls (the models'
  forward: extraction + matching), through torch's global module hooks, which see both
  libraries alike;
- **train**: the end time of every optimizer step (torch's global optimizer post-hook),
  so that a step's time is the interval between consecutive steps (data loading, ground
  truth, forward, loss, backward, Adam, logging: everything the loop does);
- the process's CPU time (user + sys, all threads: less dependent on the machine load
  than wall time, though spinning OpenMP threads still count) and its peak resident
  memory (``ru_maxrss``).

**eval**: the HPatches protocol on our built-in HPatches-format set (``builtin/hpatches``
under the data root, built on first use), linked into the peer's
``data/hpatches-sequences-release`` (one link per sequence: upstream lists every entry of
that folder as a sequence, so our ``manifest.json`` must not be in it). Both run the same
shipped config with OpenCV RANSAC at 0.5 px and data loading in the main process
(``data.num_workers=0``; upstream's default is 16 worker processes). The headline metrics
are printed side by side with the per-pair agreement of the deterministic ones.

**train**: ``python -m gluefactory.train`` of both, the shipped ALIKED + LightGlue
homography config (9 layers, 256-D, 4 heads, 512 keypoints, 640 x 480 patches, ``lg``
photometric augmentation), batch 4, no worker processes, no gradient checkpointing, one
epoch over ``batch x (warmup + steps)`` images: the scikit-image photographs linked
under distinct names in a ``revisitop1m``-style folder (``jpg/`` + ``revisitop1m.txt``)
that both datasets read. The first ``warmup`` steps are dropped; the median step is
compared.

Ratios are ours / upstream (below 1: we are faster). Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Runs `python -m MODULE ARGS...` under torch hooks and writes what it measured as JSON to
# $PEER_BENCH_OUT. Executed by both interpreters (ours and the peer's venv).
DRIVER = r"""
import json, os, resource, runpy, sys, time
import torch
state = {"depth": 0, "t0": 0.0, "model_s": 0.0, "calls": 0, "steps": [], "by_class": {}}
SKIP = {"CacheLoader"}
mode = os.environ["PEER_BENCH_MODE"]
if mode == "eval":
    def _pre(module, args):
        if state["depth"] == 0:
            state["t0"] = time.perf_counter()
        state["depth"] += 1
    def _post(module, args, out):
        state["depth"] -= 1
        if state["depth"] == 0:
            dt, name = time.perf_counter() - state["t0"], type(module).__name__
            c = state["by_class"].setdefault(name, [0, 0.0])
            c[0], c[1] = c[0] + 1, c[1] + dt
            if name not in SKIP:  # reading cached predictions is not a model
                state["model_s"] += dt
                state["calls"] += 1
    torch.nn.modules.module.register_module_forward_pre_hook(_pre)
    torch.nn.modules.module.register_module_forward_hook(_post)
else:
    def _step(opt, args, kwargs):
        state["steps"].append(time.perf_counter())
    from torch.optim.optimizer import register_optimizer_step_post_hook
    register_optimizer_step_post_hook(_step)
module, sys.argv = sys.argv[1], sys.argv[1:]
t0, code = time.perf_counter(), 0
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime  # all threads; less load-dependent than wall time
    state.update(run_s=time.perf_counter() - t0, peak_rss_mb=ru.ru_maxrss / 1024,
                 cpu_s=cpu, code=code)
    with open(os.environ["PEER_BENCH_OUT"], "w") as f:
        json.dump(state, f)
sys.exit(code)
"""

HEADLINE = [  # (upstream key, label, deterministic)
    ("mprec@1px", "prec@1px (median)", True),
    ("mprec@3px", "prec@3px (median)", True),
    ("mnum_matches", "matches (median)", True),
    ("mnum_keypoints", "keypoints (median)", True),
    ("H_error_dlt@1px", "H_error_dlt AUC@1px", True),
    ("H_error_dlt@3px", "H_error_dlt AUC@3px", True),
    ("H_error_dlt@5px", "H_error_dlt AUC@5px", True),
    ("H_error_dlt_mAA", "H_error_dlt mAA", True),
    ("H_error_ransac@1px", "H_error_ransac AUC@1px", False),
    ("H_error_ransac@3px", "H_error_ransac AUC@3px", False),
    ("H_error_ransac@5px", "H_error_ransac AUC@5px", False),
    ("H_error_ransac_mAA", "H_error_ransac mAA", False),
    ("mransac_inl", "RANSAC inliers (median)", False),
    ("mransac_inl%", "RANSAC inlier ratio (median)", False),
]
# upstream's loader passes prefetch_factor 2 even without workers, which torch rejects
PEER_NO_PREFETCH = "data.prefetch_factor=null"
PER_PAIR = ["prec@1px", "prec@3px", "num_matches", "num_keypoints", "H_error_dlt"]


# ----------------------------------------------------------------------------- runs


def run_driven(
    python: str,
    module: str,
    args: list[str],
    cwd: Path,
    env: dict,
    mode: str,
    log: Path,
) -> dict:
    """Run ``python -m module args`` under DRIVER; its measurements + the process wall."""
    out = log.with_suffix(".json")
    out.unlink(missing_ok=True)
    env = {**env, "PEER_BENCH_MODE": mode, "PEER_BENCH_OUT": str(out)}
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(
            [python, "-c", DRIVER, module, *args],
            cwd=cwd,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(
            f"{python} -m {module} failed (exit {proc.returncode}), log {log}:\n"
            + "\n".join(tail)
        )
    res = json.loads(out.read_text())
    res["wall_s"] = wall
    return res


def base_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEER_BENCH")}
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        PYTHONUNBUFFERED="1",
        TQDM_MININTERVAL="5",
    )
    return env


def ours_env(threads: int, outputs: Path) -> dict:
    from gluefactory import settings

    env = base_env(threads)
    env["PYTHONPATH"] = str(REPO)
    env["GLUEFACTORY_DATA"] = str(settings.data_root())
    env["GLUEFACTORY_OUTPUTS"] = str(outputs)
    return env


def peer_env(threads: int, peer: Path) -> dict:
    env = base_env(threads)
    env.pop("PYTHONPATH", None)  # never let our package shadow the peer's
    for k in list(env):
        if k.startswith("GLUEFACTORY_"):
            env.pop(k)
    env["TORCH_HOME"] = str(peer / "torch_home")
    return env


# ----------------------------------------------------------------------------- data


def link_hpatches(peer: Path, sequences: int | None = None) -> Path:
    """Link our built-in HPatches-format sequences into the peer's data folder.

    Returns the linked folder; ``sequences`` keeps only the first N (a smoke test).
    """
    from gluefactory.datasets.sources.builtin import ensure_builtin

    src = ensure_builtin("hpatches")
    dest = peer / "glue-factory" / "data" / "hpatches-sequences-release"
    if dest.is_symlink():
        dest.unlink()
    if dest.exists():
        foreign = [
            p
            for p in dest.iterdir()
            if not (p.is_symlink() and p.resolve().parent == src.resolve())
        ]
        if foreign:
            raise SystemExit(
                f"{dest} holds something other than links to {src} ({foreign[0].name}):"
                " move it away first (a real HPatches copy is not overwritten)."
            )
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for seq in sorted(p for p in src.iterdir() if p.is_dir())[:sequences]:
        (dest / seq.name).symlink_to(seq.resolve())
    return dest


def make_photo_folder(root: Path, peer: Path, n_train: int, n_val: int) -> Path:
    """A revisitop1m-style folder (``jpg/`` + ``revisitop1m.txt``) of distinct names.

    Both homography datasets read it; ours drops duplicate list entries, so each
    photograph is linked several times under different names.
    """
    from gluefactory.datasets.sources.photos import ensure_photos

    photos = sorted(p for p in ensure_photos().glob("*.png"))
    folder = root / f"photos-revisitop1m-{root.name}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "jpg").mkdir(parents=True)
    names = []
    for i in range(n_train + n_val):
        p = photos[i % len(photos)]
        name = f"{i:04d}_{p.name}"
        (folder / "jpg" / name).symlink_to(p.resolve())
        names.append(name)
    (folder / "revisitop1m.txt").write_text("\n".join(names) + "\n")
    link = peer / "glue-factory" / "data" / folder.name
    if link.is_symlink():
        link.unlink()
    link.symlink_to(folder.resolve())
    return folder


# ----------------------------------------------------------------------------- eval


def read_h5(path: Path) -> dict:
    import h5py
    import numpy as np

    out = {}
    with h5py.File(path, "r") as f:
        for k in PER_PAIR:
            if k in f and isinstance(f[k], h5py.Dataset):
                out[k] = np.asarray(f[k][()], dtype=float)
    return out


def eval_one(conf: str, args, linked: Path) -> dict:
    peer_gf = args.peer / "glue-factory"
    tag = f"peer-bench-{args.workdir.name}_{conf}"
    est = ["eval.estimator=opencv", "eval.ransac_th=0.5", "data.num_workers=0"]
    ours_out = args.workdir / "outputs"
    # the whole set as documented; a subset through the peer's links (same files)
    data_dir = "data.data_dir=" + (
        "builtin/hpatches" if args.sequences is None else str(linked)
    )
    runs = {}
    order = ["ours", "peer"] if args.ours_first else ["peer", "ours"]
    for who in order:
        log = args.workdir / f"eval_{conf}_{who}.log"
        print(f"eval {conf}: {who} ...", file=sys.stderr, flush=True)
        if who == "ours":
            runs[who] = run_driven(
                args.ours_python,
                "gluefactory.eval.hpatches",
                ["--conf", conf, "--tag", tag, "--overwrite", data_dir, *est],
                REPO,
                ours_env(args.threads, ours_out),
                "eval",
                log,
            )
            res_dir = ours_out / "results" / "hpatches" / tag
        else:
            runs[who] = run_driven(
                str(args.peer / "venv" / "bin" / "python"),
                "gluefactory.eval.hpatches",
                ["--conf", conf, "--tag", tag, "--overwrite", *est, PEER_NO_PREFETCH],
                peer_gf,
                peer_env(args.threads, args.peer),
                "eval",
                log,
            )
            res_dir = peer_gf / "outputs" / "results" / "hpatches" / tag
        runs[who]["summaries"] = json.loads((res_dir / "summaries.json").read_text())
        runs[who]["per_pair"] = read_h5(res_dir / "results.h5")
        runs[who]["dir"] = str(res_dir)
    for r in runs.values():
        s = r["summaries"]
        if "H_error_dlt_mAA" not in s and all(
            f"H_error_dlt@{t}px" in s for t in (1, 3, 5)
        ):
            s["H_error_dlt_mAA"] = sum(s[f"H_error_dlt@{t}px"] for t in (1, 3, 5)) / 3
    return runs


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def calls(run: dict) -> str:
    by = run.get("by_class", {})
    return ", ".join(f"{k}: {n}, {t:.1f} s" for k, (n, t) in sorted(by.items()))


def eval_tables(conf: str, runs: dict) -> str:
    import numpy as np

    o, p = runs["ours"]["summaries"], runs["peer"]["summaries"]
    lines = [
        f"**{conf}**, HPatches protocol on the built-in set, OpenCV RANSAC 0.5 px:\n",
        "| metric | ours | upstream | ours - upstream |",
        "|---|---|---|---|",
    ]
    for key, label, _ in HEADLINE:
        a, b = o.get(key), p.get(key)
        d = (
            a - b
            if isinstance(a, (int, float)) and isinstance(b, (int, float))
            else None
        )
        lines.append(f"| {label} | {fmt(a)} | {fmt(b)} | {fmt(d)} |")
    po, pp = runs["ours"]["per_pair"], runs["peer"]["per_pair"]
    rows = []
    for k in PER_PAIR:
        if k in po and k in pp and len(po[k]) == len(pp[k]):
            a, b = po[k], pp[k]
            fin = np.isfinite(a) & np.isfinite(b)
            diff = np.abs(a[fin] - b[fin])
            rows.append(
                f"| {k} | {len(a)} | {int((~fin).sum())} | {np.median(diff):.4g} | "
                f"{diff.max():.4g} |"
            )
    if rows:
        lines += [
            "",
            "Per pair (same pair order), |ours - upstream|:\n",
            "| per-pair metric | pairs | non-finite in either | median | max |",
            "|---|---|---|---|---|",
            *rows,
        ]
    ro, rp = runs["ours"], runs["peer"]
    lines += [
        "",
        "| time | ours (s) | upstream (s) | ratio ours / upstream |",
        "|---|---|---|---|",
        f"| process wall (start to exit) | {ro['wall_s']:.1f} | {rp['wall_s']:.1f} | "
        f"{ro['wall_s'] / rp['wall_s']:.2f} |",
        f"| models' forward (outermost nn.Module calls) | {ro['model_s']:.1f} | "
        f"{rp['model_s']:.1f} | {ro['model_s'] / rp['model_s']:.2f} |",
        f"| rest (imports, data, metrics, RANSAC, files) | "
        f"{ro['wall_s'] - ro['model_s']:.1f} | {rp['wall_s'] - rp['model_s']:.1f} | "
        f"{(ro['wall_s'] - ro['model_s']) / (rp['wall_s'] - rp['model_s']):.2f} |",
        f"| process CPU time (user + sys) | {ro['cpu_s']:.1f} | {rp['cpu_s']:.1f} | "
        f"{ro['cpu_s'] / rp['cpu_s']:.2f} |",
        f"| peak RSS (MB) | {ro['peak_rss_mb']:.0f} | {rp['peak_rss_mb']:.0f} | "
        f"{ro['peak_rss_mb'] / rp['peak_rss_mb']:.2f} |",
        "",
        "Outermost module calls (class: calls, seconds): ours "
        + calls(ro)
        + "; upstream "
        + calls(rp)
        + " (upstream's CacheLoader, which reads the cached predictions back, is not"
        " counted as model time).",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- train


def train_overrides(args, n_train: int) -> list[str]:
    b = args.batch
    return [
        f"data.train_size={n_train}",
        f"data.val_size={b}",
        f"data.batch_size={b}",
        "data.num_workers=0",
        f"model.extractor.max_num_keypoints={args.keypoints}",
        "model.matcher.checkpointed=false",
        "train.epochs=1",
        "train.log_every_iter=1",
        "train.eval_every_iter=100000",
        "train.save_every_iter=100000",
        "train.plot=null",
    ]


def train_compare(args) -> dict:
    n_steps = args.warmup + args.steps  # the first `warmup` are not timed
    n_train = args.batch * n_steps
    folder = make_photo_folder(args.workdir, args.peer, n_train, args.batch)
    common = train_overrides(args, n_train)
    exp = f"peer-bench-{args.workdir.name}"
    runs = {}
    order = ["ours", "peer"] if args.ours_first else ["peer", "ours"]
    for who in order:
        log = args.workdir / f"train_{who}.log"
        print(f"train: {who} ...", file=sys.stderr, flush=True)
        if who == "ours":
            out = args.workdir / "outputs"
            shutil.rmtree(out / "training" / exp, ignore_errors=True)
            r = run_driven(
                args.ours_python,
                "gluefactory.train",
                [
                    exp,
                    "--conf",
                    "aliked+lightglue_homography",
                    "--no_eval_0",
                    f"data.data_dir={folder}",
                    "data.max_image_size=null",
                    *common,
                ],
                REPO,
                ours_env(args.threads, out),
                "train",
                log,
            )
        else:
            gf = args.peer / "glue-factory"
            shutil.rmtree(gf / "outputs" / "training" / exp, ignore_errors=True)
            r = run_driven(
                str(args.peer / "venv" / "bin" / "python"),
                "gluefactory.train",
                [
                    exp,
                    "--conf",
                    "gluefactory/configs/aliked+lightglue_homography.yaml",
                    "--no_eval_0",
                    f"data.data_dir={folder.name}",
                    "data.image_list=revisitop1m.txt",
                    PEER_NO_PREFETCH,
                    *common,
                ],
                gf,
                peer_env(args.threads, args.peer),
                "train",
                log,
            )
        ends = r["steps"]
        if len(ends) < args.warmup + 2:
            raise RuntimeError(f"{who}: only {len(ends)} optimizer steps, see {log}")
        d = [b - a for a, b in zip(ends[:-1], ends[1:])]
        r["step_times"] = d[args.warmup - 1 :] if args.warmup else d
        runs[who] = r
    return runs


def train_table(args, runs: dict) -> str:
    o, p = runs["ours"], runs["peer"]
    mo, mp = statistics.median(o["step_times"]), statistics.median(p["step_times"])
    ao, ap = statistics.mean(o["step_times"]), statistics.mean(p["step_times"])
    lines = [
        f"Training step, ALIKED-n16 (frozen) + LightGlue 9 x 256-D x 4 heads, batch "
        f"{args.batch}, 640 x 480, {args.keypoints} keypoints, {len(o['step_times'])} / "
        f"{len(p['step_times'])} steps timed after {args.warmup}:\n",
        "| measure | ours | upstream | ratio ours / upstream |",
        "|---|---|---|---|",
        f"| median step (s) | {mo:.2f} | {mp:.2f} | {mo / mp:.2f} |",
        f"| mean step (s) | {ao:.2f} | {ap:.2f} | {ao / ap:.2f} |",
        f"| fastest step (s) | {min(o['step_times']):.2f} | {min(p['step_times']):.2f} | "
        f"{min(o['step_times']) / min(p['step_times']):.2f} |",
        f"| process wall (s) | {o['wall_s']:.1f} | {p['wall_s']:.1f} | "
        f"{o['wall_s'] / p['wall_s']:.2f} |",
        f"| process CPU time (s) | {o['cpu_s']:.1f} | {p['cpu_s']:.1f} | "
        f"{o['cpu_s'] / p['cpu_s']:.2f} |",
        f"| peak RSS (MB) | {o['peak_rss_mb']:.0f} | {p['peak_rss_mb']:.0f} | "
        f"{o['peak_rss_mb'] / p['peak_rss_mb']:.2f} |",
        f"| optimizer steps run | {len(o['steps'])} | {len(p['steps'])} | |",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def versions(python: str) -> str:
    """torch, NumPy and OpenCV versions of an interpreter."""
    code = "import torch, numpy, cv2; print(torch.__version__, numpy.__version__, cv2.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    t, n, c = (out.stdout.split() + ["?"] * 3)[:3]
    return f"torch {t}, NumPy {n}, OpenCV {c}"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--peer", type=Path, required=True, help="build_peer.sh's DEST")
    p.add_argument("--only", nargs="+", choices=["eval", "train"], default=None)
    p.add_argument("--confs", nargs="+", default=["aliked+lightglue-official"])
    p.add_argument(
        "--sequences", type=int, help="only the first N sequences (smoke test)"
    )
    p.add_argument("--steps", type=int, default=12, help="timed training steps")
    p.add_argument("--warmup", type=int, default=2, help="training steps dropped")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--keypoints", type=int, default=512)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--ours_python",
        default=sys.executable,
        help="interpreter for ours (e.g. a venv with the peer's torch, to compare like with like)",
    )
    p.add_argument("--ours_first", action="store_true", help="run ours before upstream")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/gf_peer_bench"))
    p.add_argument("--output", type=Path, help="also write the tables to this file")
    p.add_argument("--json", type=Path, help="write the raw measurements here")
    args = p.parse_args()
    args.peer = args.peer.resolve()
    if not (args.peer / "venv" / "bin" / "python").exists():
        raise SystemExit(
            f"No peer build in {args.peer}: run ../shared/peer/build_peer.sh first."
        )
    args.workdir.mkdir(parents=True, exist_ok=True)
    only = set(args.only or ["eval", "train"])

    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    head = (
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {cpu_name()}, "
        f"{os.cpu_count()} CPUs, {args.threads} threads each; ours: "
        f"{versions(args.ours_python)}; upstream: "
        f"{versions(str(args.peer / 'venv' / 'bin' / 'python'))}; load average at "
        f"start {' '.join(load0)}"
    )
    parts, raw = [head + "\n"], {}
    if "eval" in only:
        linked = link_hpatches(args.peer, args.sequences)
        for conf in args.confs:
            runs = eval_one(conf, args, linked)
            raw[f"eval/{conf}"] = {
                k: {kk: vv for kk, vv in v.items() if kk != "per_pair"}
                for k, v in runs.items()
            }
            parts.append(eval_tables(conf, runs))
            print(parts[-1], flush=True)
    if "train" in only:
        runs = train_compare(args)
        raw["train"] = runs
        parts.append(train_table(args, runs))
        print(parts[-1], flush=True)
    with open("/proc/loadavg") as f:
        parts.append(f"Load average at the end: {' '.join(f.read().split()[:3])}\n")
    text = "\n".join(parts)
    print(parts[-1])
    if args.output:
        tmp = args.output.with_suffix(args.output.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, args.output)
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw, indent=1, default=str))
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
