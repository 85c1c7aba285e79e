"""Does training work? The learning experiments of docs/training.md, re-runnable.

Offline, on the CPU, with the library's trainer, datasets, models and metrics, on
homographies of real photographs (``data_dir: photos``: scikit-image's, 4 held out, plus
the Debian packages given) and XFeat features (512 per image, forced, extracted on each
warped 480 x 360 patch):

- ``scratch``: a small LightGlue (6 layers, 96-D, 1 head: LighterGlue's architecture)
  from random weights for ``--minutes`` of wall time or ``--max_steps`` steps;
- ``finetune``: the official LighterGlue trained further for ``--finetune_minutes`` at a
  low learning rate (a wrong loss or trainer would damage it quickly);
- ``report``: curves (PNG) and tables: both trained models beside mutual nearest
  neighbours and the official LighterGlue, on held-out pairs and on the built-in
  HPatches-format set; ``all``: the three in turn;
- ``baselines``: those two baselines per scikit-image photograph; ``thresholds``: the
  trained scratch model at several ``filter_threshold``; ``breakdown``: seconds per part
  of a scratch step.

Usage (from the repository root)::

    python -m benchmarks.learning all --procs 2        # scratch, finetune, report
    python -m benchmarks.learning scratch --procs 2 --minutes 120 --max_steps 4621
    python -m benchmarks.learning scratch --n_layers 3 --step_size 700  # the first recipe
    python -m benchmarks.learning breakdown --steps 20

Experiments go to ``<outputs>/training/learning-{scratch,finetune}``, the figure and the
tables to ``docs/figures/`` (``--figures``). The CPU time given to a run is logged next
to its wall time: a shared machine can give a 30-minute run much less compute.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from gluefactory import settings
from gluefactory.datasets import get_dataset
from gluefactory.models import get_model
from gluefactory.utils.fs import atomic_path, atomic_write_text

from .common import REPO, STEP_PARTS, step_parts, table

logger = logging.getLogger("learning")

PATCH = [480, 360]
NUM_KPTS = 512
EXTRACTOR = {"name": "extractors.xfeat", "max_num_keypoints": NUM_KPTS,
             "force_num_keypoints": True, "detection_threshold": 0.0, "trainable": False}  # fmt: skip
GT = {"name": "matchers.homography_matcher", "th_positive": 3, "th_negative": 3}
SMALL_LG = {"name": "matchers.lightglue", "input_dim": 64, "descriptor_dim": 96,
            "n_layers": 6, "num_heads": 1, "filter_threshold": 0.1, "weights": None}  # fmt: skip
OFFICIAL_LG = {
    "name": "matchers.lightglue",
    "features": "xfeat",
    "filter_threshold": 0.1,
}
MNN = {"name": "matchers.nearest_neighbor", "mutual_check": True}
#: the scratch recipe's lr decay: halved every this many steps (docs/training.md)
STEP_SIZE = 1000
#: the held-out images: the validation split that shuffle_seed 0 draws from the
#: scikit-image photographs alone (kept fixed when more training photos are added)
HELD_OUT = ("skimage_astronaut.png", "skimage_clock.png", "skimage_rocket.png",
            "skimage_moon.png")  # fmt: skip
PHOTOS: dict[str, Path] = {}


def photo_root(opencv_doc: str | None = None, wallpapers: str | None = None) -> Path:
    """The training photographs (:func:`~gluefactory.datasets.sources.photos.ensure_photos`),
    in a data-root folder named after the sources."""
    if "root" not in PHOTOS:
        from gluefactory.datasets.sources.photos import (
            OPENCV_DOC_ENV,
            WALLPAPERS_ENV,
            ensure_photos,
        )

        doc = opencv_doc or os.environ.get(OPENCV_DOC_ENV)
        wall = wallpapers or os.environ.get(WALLPAPERS_ENV)
        if not (doc or wall):
            logger.warning("No Debian photo packages: the 13 scikit-image training "
                           "photographs only (docs/training.md).")  # fmt: skip
        name = "photos" + "-opencv" * bool(doc) + "-wallpapers" * bool(wall)
        PHOTOS["root"] = ensure_photos(
            settings.data_root() / name, doc or "", wall or ""
        )
    return PHOTOS["root"]


def photos_data(
    items: int, difficulty: float = 0.7, right_only: bool = False, **kw
) -> dict:
    """The homographies dataset over the photographs, ``items`` pairs per image; both
    views independent warps (``right_only``: view0 the whole image resized)."""
    return {
        "name": "homographies", "data_dir": str(photo_root()), "image_dir": "",
        "image_list": None, "train_size": None, "val_size": len(HELD_OUT),
        "val_images": list(HELD_OUT), "shuffle_seed": 0, "items_per_image": items,
        "batch_size": 4, "num_workers": 0, "right_only": right_only,
        "homography": {"difficulty": difficulty, "max_angle": 45, "patch_shape": PATCH},
        "photometric": {"name": "identity"}, **kw,
    }  # fmt: skip


def train_conf(kind: str, minutes: float, precision: str | None = None,
               num_heads: int = 1, schedule: str = "step", triplets: int = 0,
               n_layers: int = SMALL_LG["n_layers"], step_size: int = STEP_SIZE,
               train_keypoints: int = NUM_KPTS, max_steps: int | None = None) -> dict:  # fmt: skip
    """The run's config; the options are those of the command line (``main``)."""
    if kind == "scratch":
        matcher = {**SMALL_LG, "num_heads": num_heads, "n_layers": n_layers}
        if schedule == "step":  # fast progress, then refinement
            lr = 1e-3
            sched = {"type": "step", "step_size": step_size, "gamma": 0.5, "warmup": 30}
        else:  # cosine to 3e-5 over 2200 steps (30 minutes of a 3-layer model here)
            lr, max_steps = 1.5e-3, max_steps or 2200
            sched = {"type": "cosine", "warmup": 50, "min_lr_factor": 0.02}
    else:
        matcher, lr, sched = OFFICIAL_LG, 1e-5, {"type": "constant"}
    data = photos_data(40)
    if triplets:
        data.update(triplet=True, batch_size=triplets)
    return {
        "data": data,
        "data_val": photos_data(8),  # 32 held-out pairs, the same at every validation
        "model": {
            "name": "triplet_pipeline" if triplets else "two_view_pipeline",
            "extractor": {**EXTRACTOR, "max_num_keypoints": train_keypoints},
            "matcher": matcher, "ground_truth": GT,
        },
        "train": {
            "seed": 0, "epochs": 1000, "max_minutes": minutes, "max_steps": max_steps,
            "lr": lr, "lr_schedule": sched, "clip_grad": 1.0, "log_every_iter": 10,
            "eval_every_iter": 100 if kind == "scratch" else 40, "save_every_iter": 100,
            "keep_last_checkpoints": 2, "best_key": "match_recall", "best_mode": "max",
            "dataset_callback_fn": "sample_new_items", "mixed_precision": precision,
        },
    }  # fmt: skip


def run_training(kind: str, minutes: float, precision: str | None, procs: int = 1,
                 **variant) -> None:  # fmt: skip
    """Train ``learning-<kind>``; ``procs`` > 1: DDP over that many CPU processes (gloo),
    the global batch unchanged. Wall and CPU time go to ``learning_run.json``."""
    import resource

    from gluefactory.trainer import train

    def cpu() -> float:  # this process and its finished children (the DDP ranks)
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + ch.ru_utime + ch.ru_stime

    t0, c0 = time.time(), cpu()
    conf = train_conf(kind, minutes, precision, **variant)
    if procs > 1:
        conf["train"].update(num_devices=procs, device="cpu")
    summary = train(f"learning-{kind}", conf, overwrite=True, distributed_run=procs > 1)
    info = {"wall_s": time.time() - t0, "cpu_s": cpu() - c0, "steps": summary["step"],
            "status": summary["status"], "mixed_precision": precision, "processes": procs,
            "threads": torch.get_num_threads() if procs == 1 else "cores / processes"}  # fmt: skip
    path = settings.training_root() / f"learning-{kind}" / "learning_run.json"
    atomic_write_text(path, json.dumps(info, indent=1))
    logger.info("%s: %d steps in %.0f s wall, %.0f s CPU", kind, info["steps"],
                info["wall_s"], info["cpu_s"])  # fmt: skip


# --------------------------------------------------------------------- evaluation
@torch.inference_mode()
def evaluate(matchers: dict, items, extractor, homography: bool = False) -> dict:
    """Each matcher on ``items``, all on the same keypoints, with the library's ground
    truth and metrics: per-pair match precision / recall (3 px), number of matches and,
    with ``homography``, the HPatches ``prec@3px`` and the OpenCV-RANSAC (0.5 px)
    homography error. Summarised by :func:`summary`."""
    from gluefactory.eval.metrics import eval_homography_robust, eval_matches_homography
    from gluefactory.models.utils.metrics import matcher_metrics
    from gluefactory.utils.tensor import collate

    gt_model = get_model(GT["name"])(GT)
    per_pair = {name: {"scene": []} for name in matchers}
    for item in items:
        data = collate([item])
        pred = {
            f"{k}{i}": v for i in (0, 1) for k, v in extractor(data[f"view{i}"]).items()
        }
        gt = {k if k.startswith("gt_") else f"gt_{k}": v
              for k, v in gt_model({**data, **pred}).items()}  # fmt: skip
        for name, matcher in matchers.items():
            out = matcher({**data, **pred})
            res = {
                k: float(v.mean())
                for k, v in matcher_metrics(out, {**pred, **gt}).items()
            }
            res["num_matches"] = float((out["matches0"] >= 0).sum())
            if homography:
                p = {**pred, **out}
                res["prec@3px"] = eval_matches_homography(data, p)["prec@3px"]
                robust = {"name": "opencv", "ransac_th": 0.5}
                res["H_error_ransac"] = eval_homography_robust(data, p, robust)[
                    "H_error_ransac"
                ]
            for k, v in {**res, "scene": item["scene"]}.items():
                per_pair[name].setdefault(k, []).append(v)
    return summary(per_pair)


def summary(per_pair: dict) -> dict:
    """Means (± standard errors over pairs for precision and recall), homography-error
    AUCs at 1 / 3 / 5 px, and precision / recall per image."""
    from gluefactory.eval.metrics import summarize

    aucs = {"H_error_ransac": ((1, 3, 5), "px")}
    table, per_image = {}, {}
    for name, res in per_pair.items():
        scenes = np.asarray(res.pop("scene"))
        s = summarize(res, aucs)
        row = {k: s[f"mean_{k}"] for k in res if k not in aucs}
        if "H_error_ransac" in res:
            row.update({f"H_auc@{t}px": s[f"H_error_ransac@{t}px"] for t in (1, 3, 5)})
        for k in ("match_precision", "match_recall"):
            row[f"{k}_se"] = float(np.std(res[k], ddof=1) / math.sqrt(len(res[k])))
        table[name] = row
        pr = np.array([res["match_precision"], res["match_recall"]])
        per_image[name] = {
            str(sc): pr[:, scenes == sc].mean(1).tolist() for sc in np.unique(scenes)
        }
    return {"pairs": len(scenes), "table": table, "per_image": per_image}


def val_items(**kw) -> list:
    split = get_dataset("homographies")(photos_data(**kw)).get_dataset("val")
    return [split[i] for i in range(len(split))]


def held_out(matchers: dict, right_only: bool = False) -> dict:
    """The held-out numbers: 25 pairs per held-out photograph (100), 512 keypoints.
    (The one place to switch to :mod:`gluefactory.eval.homographies` when it lands.)"""
    return evaluate(matchers, val_items(items=25, right_only=right_only), xfeat())


def training_image_items() -> list:
    """New pairs (validation seeds) of the scikit-image *training* photographs, to set
    beside the held-out ones: how much of the gap is generalisation."""
    ds = get_dataset("homographies")(photos_data(3))
    names = [n for n in ds.splits["train"] if n.startswith("skimage_")]
    return val_items(items=3, val_images=names, train_size=1)


def hpatches(matchers: dict) -> dict:
    """The built-in HPatches-format set (short side 480), 1024 keypoints."""
    from gluefactory.datasets.sources.builtin import ensure_builtin

    ds = get_dataset("hpatches")({"data_dir": str(ensure_builtin("hpatches"))})
    split = ds.get_dataset("test")
    items = [split[i] for i in range(len(split))]
    return evaluate(matchers, items, xfeat(1024), homography=True)


def xfeat(keypoints: int = NUM_KPTS):
    torch.manual_seed(0)
    conf = {**EXTRACTOR, "max_num_keypoints": keypoints, "seed": 0}
    return get_model(EXTRACTOR["name"])(conf).eval()


def baselines_matchers() -> dict:
    torch.manual_seed(0)
    return {"mutual NN": get_model(MNN["name"])(MNN).eval(),
            "official LighterGlue": get_model(OFFICIAL_LG["name"])(OFFICIAL_LG).eval()}  # fmt: skip


def load_trained(kind: str, **conf):
    """The matcher of the last checkpoint of ``learning-<kind>``, ``conf`` changed."""
    from gluefactory.experiments import load_experiment

    matcher = load_experiment(f"learning-{kind}", checkpoint="last").matcher
    if conf:
        from omegaconf import OmegaConf

        new = OmegaConf.to_container(OmegaConf.merge(matcher.conf, conf))
        state, matcher = (
            matcher.state_dict(),
            get_model(SMALL_LG["name"])({**new, "weights": None}),
        )
        matcher.load_state_dict(state)
    return matcher.eval()


def baselines(pairs: int) -> str:
    """The two baselines on ``pairs`` pairs of each scikit-image photograph alone: how
    hard each image is."""
    matchers, rows = baselines_matchers(), []
    for name in sorted(p.name for p in photo_root().glob("skimage_*")):
        items = val_items(items=pairs, val_images=[name], val_size=1)
        res = evaluate(matchers, items, xfeat())["table"]
        rows.append([name] + [f"{res[m]['match_precision']:.2f} / {res[m]['match_recall']:.2f}"
                              for m in matchers])  # fmt: skip
    text = f"Per scikit-image photograph, {pairs} pairs each, precision / recall:\n\n"
    print(text + table(["image", *matchers], rows))
    return text


def thresholds(values: list[float]) -> str:
    """Held-out precision / recall of the trained scratch model at each
    ``filter_threshold``: whether any operating point reaches both targets."""
    res = held_out({th: load_trained("scratch", filter_threshold=th) for th in values})
    rows = [(th, f"{r['match_precision']:.3f}", f"{r['match_recall']:.3f}",
             f"{r['num_matches']:.1f}") for th, r in res["table"].items()]  # fmt: skip
    text = "Trained scratch model, 100 held-out pairs, by filter_threshold:\n\n" + table(
        ["filter_threshold", "match_precision", "match_recall", "num_matches"], rows)  # fmt: skip
    print(text)
    return text


def breakdown(steps: int, precision: str | None, batch: int = 4,
              n_layers: int = SMALL_LG["n_layers"]) -> str:  # fmt: skip
    """Seconds per part of a scratch training step, mean of ``steps`` steps after 3."""
    from omegaconf import OmegaConf

    from gluefactory.utils.tensor import collate

    conf = OmegaConf.create(train_conf("scratch", 1.0, precision, n_layers=n_layers))
    torch.manual_seed(0)
    model = get_model("two_view_pipeline")(conf.model).train()
    split = get_dataset("homographies")(conf.data).get_dataset("train")
    it = iter(
        torch.utils.data.DataLoader(split, batch, shuffle=True, collate_fn=collate)
    )
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")
    total = dict.fromkeys(("data", *STEP_PARTS), 0.0)
    for s in range(steps + 3):
        t0 = time.perf_counter()
        data = next(it)
        parts = {"data": time.perf_counter() - t0, **step_parts(model, data, opt, cast)}
        for k, v in parts.items():
            total[k] += v * (s >= 3) / steps
    step = sum(total.values())
    rows = [(k, f"{v:.3f}", f"{v / step:.0%}") for k, v in total.items()]
    text = (f"Scratch step (batch {batch}, {torch.get_num_threads()} threads, "
            f"{precision or 'float32'}), mean of {steps} steps:\n\n"
            + table(["part", "s", "share"], [*rows, ("**step**", f"{step:.3f}", "100%")]))  # fmt: skip
    print(text)
    return text


# ------------------------------------------------------------------------- report
def curves(figures: Path) -> Path:
    """Training loss and validation precision / recall of both runs (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    keys = ("loss/total", "match_precision", "match_recall")
    titles = ("training loss", "validation match precision", "validation match recall")
    for kind, color in (("scratch", "C0"), ("finetune", "C1")):
        path = settings.training_root() / f"learning-{kind}" / "metrics.jsonl"
        if not path.exists():
            continue
        recs = [
            json.loads(line) for line in path.read_text().splitlines() if line.strip()
        ]
        for ax, key in zip(axes, keys):
            rs = [r for r in recs if r["kind"] == ("train" if key[:4] == "loss" else "val")
                  and (key in r or key[:4] != "loss")]  # fmt: skip
            ax.plot([r["step"] for r in rs], [r.get(key, math.nan) for r in rs],
                    "-" if key[:4] == "loss" else "o-", color=color, label=kind)  # fmt: skip
    for ax, title in zip(axes, titles):
        ax.set(title=title, xlabel="optimizer step")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    fig.tight_layout()
    out = figures / "learning_curves.png"
    with atomic_path(out, ".png") as tmp:
        fig.savefig(tmp, dpi=110)
    return out


def markdown(results: dict) -> list[str]:
    """The report's tables, as in docs/training.md."""
    lines = []
    for name, res in results.items():
        cols = ["match_precision", "match_recall", "num_matches"]
        cols += ["prec@3px", "H_auc@1px", "H_auc@3px", "H_auc@5px"] * (
            name == "hpatches"
        )
        rows = [[m] + [f"{r[c]:.3f} ± {r[c + '_se']:.3f}" if c + "_se" in r
                       else f"{r[c]:.1f}" if c == "num_matches" else f"{r[c]:.3f}"
                       for c in cols] for m, r in res["table"].items()]  # fmt: skip
        lines += [
            f"**{name}** ({res['pairs']} pairs)",
            "",
            table(["matcher", *cols], rows),
            "",
        ]
        if name == "held-out":
            images = sorted(next(iter(res["per_image"].values())))
            rows = [[m] + [f"{d[i][0]:.2f} / {d[i][1]:.2f}" for i in images]
                    for m, d in res["per_image"].items()]  # fmt: skip
            lines += ["Per held-out image, match precision / recall:", "",
                      table(["matcher", *images], rows), ""]  # fmt: skip
    return lines


def report(figures: Path) -> str:
    matchers = baselines_matchers()
    for kind in ("scratch", "finetune"):
        try:
            matchers[f"trained: {kind}"] = load_trained(kind)
        except Exception as e:  # noqa: BLE001 - a missing run is reported, not fatal
            logger.warning("no %s model: %s", kind, e)
    results = {
        "held-out": held_out(matchers),
        "held-out, one view warped": held_out(matchers, right_only=True),
        "training images, new pairs": evaluate(
            matchers, training_image_items(), xfeat()
        ),
        "hpatches": hpatches(matchers),
    }
    runs = {}
    for kind in ("scratch", "finetune"):
        p = settings.training_root() / f"learning-{kind}" / "learning_run.json"
        if p.exists():
            runs[kind] = json.loads(p.read_text())
    figures.mkdir(parents=True, exist_ok=True)
    curve = curves(figures)
    text = "\n".join([f"Runs: {json.dumps(runs)}", "", *markdown(results)])
    atomic_write_text(figures / "learning_table.md", text + "\n")
    atomic_write_text(figures / "learning_results.json",
                      json.dumps({"runs": runs, "results": results}, indent=1))  # fmt: skip
    logger.info("figure %s\n%s", curve, text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    what = [
        "scratch",
        "finetune",
        "report",
        "all",
        "baselines",
        "breakdown",
        "thresholds",
    ]
    p.add_argument("what", choices=what)
    p.add_argument("--minutes", type=float, default=30.0, help="scratch: wall time")
    p.add_argument("--max_steps", type=int, help="scratch: stop after this many steps")
    p.add_argument("--schedule", choices=["step", "cosine"], default="step",
                   help="scratch: lr schedule (step: the documented recipe)")  # fmt: skip
    p.add_argument("--step_size", type=int, default=STEP_SIZE,
                   help="scratch, step schedule: halve the lr every this many steps")  # fmt: skip
    p.add_argument("--num_heads", type=int, default=1, help="scratch: attention heads")
    p.add_argument("--n_layers", type=int, default=SMALL_LG["n_layers"],
                   help="scratch, breakdown: layers of the small LightGlue")  # fmt: skip
    p.add_argument("--train_keypoints", type=int, default=NUM_KPTS,
                   help="scratch: XFeat keypoints per image in training (the report: 512)")  # fmt: skip
    p.add_argument("--triplets", type=int, default=0,
                   help="scratch: batches of this many homography triplets")  # fmt: skip
    p.add_argument("--finetune_minutes", type=float, default=10.0)
    p.add_argument(
        "--procs", type=int, default=1, help="DDP over this many CPU processes"
    )
    p.add_argument(
        "--mixed_precision", choices=["bfloat16", "none"], default="none"
    )
    p.add_argument(
        "--pairs", type=int, default=25, help="baselines: pairs per photograph"
    )
    p.add_argument("--steps", type=int, default=20, help="breakdown: timed steps")
    p.add_argument("--batch", type=int, default=4, help="breakdown: batch size")
    p.add_argument("--figures", type=Path, default=REPO / "docs" / "figures")
    p.add_argument("--opencv_doc", help="unpacked opencv-doc package: 55 more photos "
                   "(default: $GLUEFACTORY_OPENCV_DOC)")  # fmt: skip
    p.add_argument("--wallpapers", help="Debian wallpaper packages unpacked in one "
                   "folder: 35 more photos (default: $GLUEFACTORY_WALLPAPERS)")  # fmt: skip
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    photo_root(args.opencv_doc, args.wallpapers)
    precision = None if args.mixed_precision == "none" else args.mixed_precision
    if args.what == "baselines":
        baselines(args.pairs)
    if args.what == "thresholds":
        thresholds([0.02, 0.05, 0.1, 0.2, 0.3])
    if args.what == "breakdown":
        breakdown(args.steps, precision, args.batch, args.n_layers)
    if args.what in ("scratch", "all"):
        variant = {k: getattr(args, k) for k in ("num_heads", "schedule", "triplets",
                   "n_layers", "step_size", "train_keypoints", "max_steps")}  # fmt: skip
        run_training("scratch", args.minutes, precision, args.procs, **variant)
    if args.what in ("finetune", "all"):
        run_training("finetune", args.finetune_minutes, precision, args.procs)
    if args.what in ("report", "all"):
        report(args.figures)


if __name__ == "__main__":
    main()
