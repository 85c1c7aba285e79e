"""Does training work? The learning experiments of docs/training.md, re-runnable.

Offline, on the CPU, with the library's trainer (``gluefactory.trainer``), datasets and
models, on homographies of the real photographs bundled with scikit-image
(``data_dir: photos``; 4 held out for validation, the rest for training) and XFeat
features (512 per image, forced; extracted on the fly on each warped 480 x 360 patch):

- ``scratch``: a small LightGlue (6 layers, 96-D, 1 head: LighterGlue's architecture)
  from random weights for ``--minutes`` (default 30) of wall time or ``--max_steps``
  optimizer steps, whichever comes first;
- ``finetune``: the official LighterGlue (``xfeat-lighterglue``) trained further for
  ``--finetune_minutes`` (default 10) at a low learning rate: a wrong loss or trainer
  would damage it quickly;
- ``report``: the training and validation curves (PNG) and one table: the two trained
  models beside mutual nearest neighbours and the official LighterGlue on the same
  XFeat keypoints, on held-out pairs (difficulty 0.7) and on the built-in
  HPatches-format set (when that set is available in this checkout).

Usage (from the repository root)::

    python benchmarks/learning.py all --procs 2        # scratch, finetune, report
    python benchmarks/learning.py scratch --procs 2 --minutes 30
    python benchmarks/learning.py scratch --procs 2 --minutes 120 --max_steps 4621
    python benchmarks/learning.py report
    python benchmarks/learning.py scratch --schedule cosine   # variants measured in
    python benchmarks/learning.py scratch --num_heads 2       # docs/training.md
    python benchmarks/learning.py baselines --pairs 100       # per-photo baselines
    python benchmarks/learning.py breakdown --steps 20        # seconds per step part
    python benchmarks/learning.py thresholds                  # P / R by filter_threshold
    python benchmarks/learning.py scratch --procs 2           # DDP, 2 CPU processes
    python benchmarks/learning.py scratch --triplets 2        # 2 triplets per batch
    python benchmarks/learning.py scratch --n_layers 3 --step_size 700  # the first recipe

Experiments go to ``<outputs>/training/learning-{scratch,finetune}``; the figure and
the table to ``docs/figures/`` (``--figures``). Numbers on these photographs are not
comparable with published HPatches or MegaDepth results. The CPU time actually given to
the run (``process_time``) is logged next to the wall time, since a shared machine can
give a 30-minute run much less compute.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gluefactory import settings  # noqa: E402
from gluefactory.datasets import get_dataset  # noqa: E402
from gluefactory.models import get_model  # noqa: E402
from gluefactory.models.utils.metrics import matcher_metrics  # noqa: E402

logger = logging.getLogger("learning")

PATCH = [480, 360]
NUM_KPTS = 512
EXTRACTOR = {
    "name": "extractors.xfeat",
    "max_num_keypoints": NUM_KPTS,
    "force_num_keypoints": True,
    "detection_threshold": 0.0,
    "trainable": False,
}
GT = {"name": "matchers.homography_matcher", "th_positive": 3, "th_negative": 3}
SMALL_LG = {
    "name": "matchers.lightglue",
    "input_dim": 64,
    "descriptor_dim": 96,
    "n_layers": 6,
    "num_heads": 1,
    "filter_threshold": 0.1,
    "weights": None,
}
OFFICIAL_LG = {
    "name": "matchers.lightglue",
    "features": "xfeat",
    "filter_threshold": 0.1,
}
MNN = {"name": "matchers.nearest_neighbor", "mutual_check": True}
#: the scratch recipe's lr decay: halved every this many steps (about 4600 steps in 30
#: minutes on a fast host; see docs/training.md)
STEP_SIZE = 1000


#: the held-out images: the validation split that shuffle_seed 0 draws from the
#: scikit-image photographs alone (kept fixed when more training photos are added)
HELD_OUT = (
    "skimage_astronaut.png",
    "skimage_clock.png",
    "skimage_rocket.png",
    "skimage_moon.png",
)
_PHOTO_ROOT: list[Path] = []


def photo_root(opencv_doc: str | None = None, wallpapers: str | None = None) -> Path:
    """The training photographs: scikit-image's, plus those of the unpacked Debian
    packages given (``--opencv_doc`` / ``--wallpapers`` or their environment variables,
    see :mod:`gluefactory.datasets.sources.photos`), in a folder named after the sources."""
    if _PHOTO_ROOT:
        return _PHOTO_ROOT[0]
    from gluefactory.datasets.sources.photos import (
        OPENCV_DOC_ENV,
        WALLPAPERS_ENV,
        ensure_photos,
    )

    opencv_doc = opencv_doc or os.environ.get(OPENCV_DOC_ENV)
    wallpapers = wallpapers or os.environ.get(WALLPAPERS_ENV)
    if not (opencv_doc or wallpapers):
        logger.warning(
            "No Debian photo packages given: training on the 13 scikit-image "
            "photographs only (see docs/training.md for the 90 more photos)."
        )
    name = (
        "photos"
        + ("-opencv" if opencv_doc else "")
        + ("-wallpapers" if wallpapers else "")
    )
    root = ensure_photos(
        settings.data_root() / name, opencv_doc or "", wallpapers or ""
    )
    _PHOTO_ROOT.append(root)
    return root


def photos_data(
    split_items: int, difficulty: float = 0.7, right_only: bool = False, **kw
) -> dict:
    """The homographies dataset over the bundled photographs (4 held out).

    Both views are independent warps of the given difficulty (upstream's default). With
    ``right_only`` view0 is the whole image resized to the patch (aspect not kept) and
    view1 one warp: also reported, as a second held-out set."""
    conf = {
        "name": "homographies",
        "data_dir": str(photo_root()),
        "image_dir": "",
        "image_list": None,
        "train_size": None,
        "val_size": len(HELD_OUT),
        "val_images": list(HELD_OUT),
        "shuffle_seed": 0,
        "items_per_image": split_items,
        "batch_size": 4,
        "num_workers": 0,
        "right_only": right_only,
        "homography": {"difficulty": difficulty, "max_angle": 45, "patch_shape": PATCH},
        "photometric": {"name": "identity"},
    }
    conf.update(kw)
    return conf


def train_conf(
    kind: str,
    minutes: float,
    precision: str | None = "bfloat16",
    num_heads: int = 1,
    schedule: str = "step",
    triplets: int = 0,
    n_layers: int = SMALL_LG["n_layers"],
    step_size: int = STEP_SIZE,
    train_keypoints: int = NUM_KPTS,
    max_steps: int | None = None,
) -> dict:
    """``schedule``/``num_heads``/``triplets`` (scratch only): ``step`` (the documented
    recipe, lr halved every ``step_size`` steps) or ``cosine`` (a variant measured in
    docs/training.md), the head count, and ``triplets`` > 0: batches of that many
    homography triplets (3 pairs each, one extraction per view: the triplet pipeline)
    instead of 4 pairs; ``n_layers``: the depth of the small LightGlue (6: the
    LighterGlue architecture); ``train_keypoints``: XFeat keypoints per image in training
    and in the validation during training (the report always evaluates at 512);
    ``max_steps``: stop after that many optimizer steps even within ``minutes`` (a
    step count reproduces a run on any host, a wall time does not)."""
    if kind == "scratch":
        matcher = {**SMALL_LG, "num_heads": num_heads, "n_layers": n_layers}
        if schedule == "step":
            # halved every STEP_SIZE steps: fast progress, then refinement
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
            "matcher": matcher,
            "ground_truth": GT,
        },
        "train": {
            "seed": 0,
            "epochs": 1000,
            "max_minutes": minutes,
            "max_steps": max_steps,
            "lr": lr,
            "lr_schedule": sched,
            "clip_grad": 1.0,
            "log_every_iter": 10,
            "eval_every_iter": 100 if kind == "scratch" else 40,
            "save_every_iter": 100,
            "keep_last_checkpoints": 2,
            "best_key": "match_recall",
            "best_mode": "max",
            "dataset_callback_fn": "sample_new_items",
            "mixed_precision": precision,
        },
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DDP ranks)."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def run_training(
    kind: str, minutes: float, precision: str | None, procs: int = 1, **variant
) -> None:
    """Train ``learning-<kind>``; ``procs`` > 1: DDP over that many CPU processes
    (gloo), the global batch unchanged (each rank takes its share of every batch)."""
    from gluefactory.trainer.launch import train

    t0, c0 = time.time(), _cpu_seconds()
    conf = train_conf(kind, minutes, precision, **variant)
    if procs > 1:
        conf["train"].update(num_devices=procs, device="cpu")
    summary = train(f"learning-{kind}", conf, overwrite=True, distributed_run=procs > 1)
    wall, cpu = time.time() - t0, _cpu_seconds() - c0
    folder = settings.training_root() / f"learning-{kind}"
    info = {
        "wall_s": wall,
        "cpu_s": cpu,
        "steps": summary["step"],
        "status": summary["status"],
        "mixed_precision": precision,
        "processes": procs,
        "threads": torch.get_num_threads() if procs == 1 else "cores / processes",
    }
    (folder / "learning_run.json").write_text(json.dumps(info, indent=1))
    logger.info(
        "%s: %d steps in %.0f s wall, %.0f s CPU", kind, info["steps"], wall, cpu
    )


# --------------------------------------------------------------------- evaluation


@torch.inference_mode()
def evaluate(
    matchers: dict, items, extractor, homography_metrics: bool = False
) -> dict:
    """Mean per-pair match precision / recall (3 px GT) of each matcher on ``items``,
    all on the same XFeat keypoints; plus HPatches-style metrics when asked."""
    from gluefactory.utils.tensor import collate

    gt_model = get_model(GT["name"])(GT)
    sums = {name: {} for name in matchers}
    per_image = {name: {} for name in matchers}  # name -> image -> [(P, R)]
    n = 0
    for item in items:
        data = collate([item])
        feats = [extractor(data[f"view{i}"]) for i in (0, 1)]
        pred = {f"{k}{i}": v for i, f in enumerate(feats) for k, v in f.items()}
        gt = {
            f"gt_{k}" if not k.startswith("gt_") else k: v
            for k, v in gt_model({**data, **pred}).items()
        }
        for name, m in matchers.items():
            out = m({**data, **pred})
            res = {
                k: float(v.mean())
                for k, v in matcher_metrics(out, {**pred, **gt}).items()
            }
            res["num_matches"] = float((out["matches0"] >= 0).sum())
            extra = hpatches_metrics(data, pred, out) if homography_metrics else {}
            for k, v in {**res, **extra}.items():
                sums[name].setdefault(k, []).append(v)
            per_image[name].setdefault(item["scene"], []).append(
                (res["match_precision"], res["match_recall"])
            )
        n += 1
    table = {}
    for name, d in sums.items():
        row = {}
        for k, vals in d.items():
            if k == "H_error_ransac":
                from gluefactory.eval.metrics import auc

                a1, a3, a5 = auc(vals, [1, 3, 5])
                row.update({"H_auc@1px": a1, "H_auc@3px": a3, "H_auc@5px": a5})
            else:
                row[k] = sum(vals) / len(vals)
                if k in ("match_precision", "match_recall"):
                    var = sum((v - row[k]) ** 2 for v in vals) / max(1, len(vals) - 1)
                    row[k + "_se"] = math.sqrt(var / len(vals))
        table[name] = row
    by_image = {
        name: {
            img: [
                sum(v[0] for v in vals) / len(vals),
                sum(v[1] for v in vals) / len(vals),
            ]
            for img, vals in d.items()
        }
        for name, d in per_image.items()
    }
    return {"pairs": n, "table": table, "per_image": by_image}


def hpatches_metrics(data, pred, out) -> dict:
    from gluefactory.eval.metrics import eval_homography_robust, eval_matches_homography

    p = {**pred, **out}
    res = eval_matches_homography(data, p)
    res.update(eval_homography_robust(data, p, {"name": "opencv", "ransac_th": 0.5}))
    return {"prec@3px": res["prec@3px"], "H_error_ransac": res["H_error_ransac"]}


def held_out_items(num_per_image: int = 25, right_only: bool = False):
    ds = get_dataset("homographies")(photos_data(num_per_image, right_only=right_only))
    return [ds.get_dataset("val")[i] for i in range(len(ds.get_dataset("val")))]


def baselines(num_pairs: int) -> str:
    """Mutual NN and the official LighterGlue on ``num_pairs`` held-out-style pairs of
    each scikit-image photograph alone: how hard each image is (docs/training.md)."""
    torch.manual_seed(0)
    extractor = get_model(EXTRACTOR["name"])({**EXTRACTOR, "seed": 0}).eval()
    matchers = {
        "mutual NN": get_model(MNN["name"])(MNN).eval(),
        "official LighterGlue": get_model(OFFICIAL_LG["name"])(OFFICIAL_LG).eval(),
    }
    names = sorted(p.name for p in photo_root().glob("skimage_*"))
    lines = [
        f"Per scikit-image photograph, {num_pairs} pairs each, precision / recall:",
        "",
        "| image | " + " | ".join(matchers) + " |",
        "|---" * (len(matchers) + 1) + "|",
    ]
    for name in names:
        conf = {**photos_data(num_pairs), "val_images": [name], "val_size": 1}
        split = get_dataset("homographies")(conf).get_dataset("val")
        res = evaluate(matchers, [split[i] for i in range(len(split))], extractor)
        cells = [
            f"{res['table'][m]['match_precision']:.2f} / "
            f"{res['table'][m]['match_recall']:.2f}"
            for m in matchers
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    return text


def thresholds(values: list[float]) -> str:
    """Held-out precision / recall of the trained scratch model at each LightGlue
    ``filter_threshold``: whether any operating point reaches both targets."""
    from omegaconf import OmegaConf

    torch.manual_seed(0)
    extractor = get_model(EXTRACTOR["name"])({**EXTRACTOR, "seed": 0}).eval()
    trained = load_trained("scratch")
    matchers = {}
    for th in values:
        conf = OmegaConf.merge(trained.conf, {"filter_threshold": th})
        m = get_model(SMALL_LG["name"])(
            {**OmegaConf.to_container(conf), "weights": None}
        )
        m.load_state_dict(trained.state_dict())
        matchers[th] = m.eval()
    res = evaluate(matchers, held_out_items(), extractor)["table"]
    lines = [
        "Trained scratch model, 100 held-out pairs, by filter_threshold:",
        "",
        "| filter_threshold | match_precision | match_recall | num_matches |",
        "|---|---|---|---|",
    ]
    for th, row in res.items():
        lines.append(
            f"| {th} | {row['match_precision']:.3f} | {row['match_recall']:.3f} | "
            f"{row['num_matches']:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    return text


def breakdown(
    steps: int,
    precision: str | None,
    batch: int = 4,
    n_layers: int = SMALL_LG["n_layers"],
) -> str:
    """Seconds per part of a scratch training step (``n_layers`` deep), timed in one
    process over ``steps`` steps (after 3 warm-up steps): where the 30 minutes go."""
    from omegaconf import OmegaConf

    from gluefactory.utils.tensor import collate

    conf = OmegaConf.create(train_conf("scratch", 1.0, precision, n_layers=n_layers))
    torch.manual_seed(0)
    model = get_model("two_view_pipeline")(conf.model).train()
    split = get_dataset("homographies")(conf.data).get_dataset("train")
    loader = torch.utils.data.DataLoader(
        split, batch_size=batch, shuffle=True, collate_fn=collate
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    parts = ["data", "extract", "match forward", "ground truth", "loss"]
    parts += ["backward", "optimizer"]
    total = dict.fromkeys(parts, 0.0)
    it = iter(loader)
    cast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bfloat16"
        else torch.autocast("cpu", enabled=False)
    )
    for s in range(steps + 3):
        times = [time.perf_counter()]
        data = next(it)
        times.append(time.perf_counter())
        with cast:
            pred = {}
            with torch.no_grad():
                for i in (0, 1):
                    for k, v in model.extract_view(data, i).items():
                        pred[f"{k}{i}"] = v
            times.append(time.perf_counter())
            pred = {**pred, **model.matcher({**data, **pred})}
            times.append(time.perf_counter())
            pred = model._with_ground_truth(data, pred)
            times.append(time.perf_counter())
            losses, _ = model.matcher.loss(pred, {**pred, **data})
            loss = losses["total"].float().mean()
            times.append(time.perf_counter())
        loss.backward()
        times.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter())
        if s >= 3:
            for k, a, b in zip(parts, times, times[1:]):
                total[k] += b - a
    step = sum(total.values()) / steps
    lines = [
        f"Scratch step (batch {batch}, {torch.get_num_threads()} threads, "
        f"{precision or 'float32'}), mean of {steps} steps:",
        "",
        "| part | s | share |",
        "|---|---|---|",
    ]
    for k, v in total.items():
        lines.append(f"| {k} | {v / steps:.3f} | {v / steps / step:.0%} |")
    lines.append(f"| **step** | {step:.3f} | 100% |")
    text = "\n".join(lines)
    print(text)
    return text


def training_image_items(num_per_image: int = 3):
    """Fresh pairs (validation seeds) of the scikit-image *training* photographs: set
    beside the held-out pairs, they show how much of the gap is generalisation."""
    conf = photos_data(num_per_image)
    ds = get_dataset("homographies")(conf)
    names = [n for n in ds.splits["train"] if n.startswith("skimage_")]
    conf = {**conf, "val_images": names, "train_size": 1}
    split = get_dataset("homographies")(conf).get_dataset("val")
    return [split[i] for i in range(len(split))]


def hpatches_items():
    """The built-in HPatches-format set (short side 480), or None if unavailable."""
    try:
        from gluefactory.datasets.sources.builtin import ensure_builtin
    except ImportError:
        return None
    root = ensure_builtin("hpatches")
    ds = get_dataset("hpatches")({"data_dir": str(root)})
    split = ds.get_dataset("test")
    return [split[i] for i in range(len(split))]


def load_trained(kind: str):
    from gluefactory.experiments import load_experiment

    model = load_experiment(f"learning-{kind}", checkpoint="last")
    return model.matcher.eval()


def curves(figures: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for kind, color in (("scratch", "C0"), ("finetune", "C1")):
        path = settings.training_root() / f"learning-{kind}" / "metrics.jsonl"
        if not path.exists():
            continue
        recs = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        tr = [r for r in recs if r["kind"] == "train" and "loss/total" in r]
        va = [r for r in recs if r["kind"] == "val"]
        axes[0].plot(
            [r["step"] for r in tr],
            [r["loss/total"] for r in tr],
            color=color,
            label=kind,
        )
        axes[1].plot(
            [r["step"] for r in va],
            [r.get("match_precision", math.nan) for r in va],
            "o-",
            color=color,
            label=kind,
        )
        axes[2].plot(
            [r["step"] for r in va],
            [r.get("match_recall", math.nan) for r in va],
            "o-",
            color=color,
            label=kind,
        )
    for ax, title in zip(
        axes, ("training loss", "validation match precision", "validation match recall")
    ):
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[1].set_ylim(0, 1)
    axes[2].set_ylim(0, 1)
    fig.tight_layout()
    figures.mkdir(parents=True, exist_ok=True)
    out = figures / "learning_curves.png"
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, out)
    return out


def report(figures: Path) -> str:
    torch.manual_seed(0)
    extractor = get_model(EXTRACTOR["name"])({**EXTRACTOR, "seed": 0}).eval()
    matchers = {"mutual NN": get_model(MNN["name"])(MNN).eval()}
    matchers["official LighterGlue"] = get_model(OFFICIAL_LG["name"])(
        OFFICIAL_LG
    ).eval()
    for kind in ("scratch", "finetune"):
        try:
            matchers[f"trained: {kind}"] = load_trained(kind)
        except Exception as e:  # noqa: BLE001 - a missing run is reported, not fatal
            logger.warning("no %s model: %s", kind, e)
    results = {
        "held-out": evaluate(matchers, held_out_items(), extractor),
        "held-out, one view warped": evaluate(
            matchers, held_out_items(right_only=True), extractor
        ),
        "training images, new pairs": evaluate(
            matchers, training_image_items(), extractor
        ),
    }
    hp = hpatches_items()
    if hp is not None:
        ex = get_model(EXTRACTOR["name"])(
            {**EXTRACTOR, "max_num_keypoints": 1024, "seed": 0}
        ).eval()
        results["hpatches"] = evaluate(matchers, hp, ex, homography_metrics=True)
    runs = {}
    for kind in ("scratch", "finetune"):
        p = settings.training_root() / f"learning-{kind}" / "learning_run.json"
        if p.exists():
            runs[kind] = json.loads(p.read_text())
    curve = curves(figures)
    lines = [f"Runs: {json.dumps(runs)}", ""]
    for name, res in results.items():
        cols = ["match_precision", "match_recall", "num_matches"]
        if name == "hpatches":
            cols += ["prec@3px", "H_auc@1px", "H_auc@3px", "H_auc@5px"]
        lines.append(f"**{name}** ({res['pairs']} pairs)")
        lines.append("")
        lines.append("| matcher | " + " | ".join(cols) + " |")
        lines.append("|---" * (len(cols) + 1) + "|")
        for m, row in res["table"].items():
            cells = []
            for c in cols:
                v = row.get(c, math.nan)
                se = row.get(c + "_se")
                cells.append(
                    f"{v:.3f} ± {se:.3f}"
                    if se is not None
                    else (f"{v:.1f}" if c == "num_matches" else f"{v:.3f}")
                )
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        if name == "held-out":
            images = sorted(next(iter(res["per_image"].values())))
            lines.append("Per held-out image, match precision / recall:")
            lines.append("")
            lines.append("| matcher | " + " | ".join(images) + " |")
            lines.append("|---" * (len(images) + 1) + "|")
            for m, d in res["per_image"].items():
                cells = [f"{d[i][0]:.2f} / {d[i][1]:.2f}" for i in images]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            lines.append("")
    text = "\n".join(lines)
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "learning_table.md").write_text(text + "\n")
    (figures / "learning_results.json").write_text(
        json.dumps({"runs": runs, "results": results}, indent=1)
    )
    logger.info("figure %s\n%s", curve, text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "what",
        choices=[
            "scratch",
            "finetune",
            "report",
            "all",
            "baselines",
            "breakdown",
            "thresholds",
        ],  # fmt: skip
    )
    p.add_argument(
        "--schedule",
        choices=["step", "cosine"],
        default="step",
        help="scratch: lr schedule (step: the documented recipe)",
    )
    p.add_argument("--num_heads", type=int, default=1, help="scratch: attention heads")
    p.add_argument(
        "--n_layers",
        type=int,
        default=SMALL_LG["n_layers"],
        help="scratch, breakdown: layers of the small LightGlue",
    )
    p.add_argument(
        "--step_size",
        type=int,
        default=STEP_SIZE,
        help="scratch, step schedule: halve the lr every this many steps",
    )
    p.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="scratch: stop after this many optimizer steps (with a long enough "
        "--minutes: the same run on a slower host)",
    )
    p.add_argument(
        "--train_keypoints",
        type=int,
        default=NUM_KPTS,
        help="scratch: XFeat keypoints per image in training (and in its validation); "
        "the report evaluates at 512 whatever this is",
    )
    p.add_argument(
        "--triplets",
        type=int,
        default=0,
        help="scratch: batches of this many homography triplets (3 pairs each, "
        "model triplet_pipeline) instead of 4 pairs",
    )
    p.add_argument(
        "--procs",
        type=int,
        default=1,
        help="train with DDP over this many CPU processes (gloo), the cores split "
        "between them; the global batch is unchanged",
    )
    p.add_argument(
        "--pairs", type=int, default=25, help="baselines: pairs per photograph"
    )
    p.add_argument("--steps", type=int, default=20, help="breakdown: timed steps")
    p.add_argument(
        "--batch", type=int, default=4, help="breakdown: batch size (one process)"
    )
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--finetune_minutes", type=float, default=10.0)
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures")
    p.add_argument(
        "--mixed_precision",
        choices=["bfloat16", "none"],
        default="bfloat16",
        help="bf16 autocast (about 1.3x faster steps on CPUs with AMX/AVX512-BF16)",
    )
    p.add_argument(
        "--opencv_doc",
        help="unpacked opencv-doc package: 55 more training photos (default: "
        "$GLUEFACTORY_OPENCV_DOC; without it, the 13 scikit-image training photos)",
    )
    p.add_argument(
        "--wallpapers",
        help="the Debian wallpaper packages unpacked in one folder: 35 more training "
        "photos (default: $GLUEFACTORY_WALLPAPERS)",
    )
    args = p.parse_args(argv)
    photo_root(args.opencv_doc, args.wallpapers)
    precision = None if args.mixed_precision == "none" else args.mixed_precision
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    if args.what == "baselines":
        baselines(args.pairs)
    if args.what == "thresholds":
        thresholds([0.02, 0.05, 0.1, 0.2, 0.3])
    if args.what == "breakdown":
        breakdown(args.steps, precision, args.batch, args.n_layers)
    if args.what in ("scratch", "all"):
        run_training(
            "scratch",
            args.minutes,
            precision,
            procs=args.procs,
            num_heads=args.num_heads,
            schedule=args.schedule,
            triplets=args.triplets,
            n_layers=args.n_layers,
            step_size=args.step_size,
            train_keypoints=args.train_keypoints,
            max_steps=args.max_steps,
        )
    if args.what in ("finetune", "all"):
        run_training("finetune", args.finetune_minutes, precision, procs=args.procs)
    if args.what in ("report", "all"):
        report(args.figures)


if __name__ == "__main__":
    main()
