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
  neighbours and the official LighterGlue, evaluated by the library's benchmarks
  through their stages (:mod:`gluefactory.eval.stages`): held-out pairs by
  :mod:`gluefactory.eval.homographies`, the built-in HPatches-format set by
  :mod:`gluefactory.eval.hpatches`; ``all``: the three in turn;
- ``baselines``: those two baselines per scikit-image photograph; ``thresholds``: the
  trained scratch model at several ``filter_threshold``; ``breakdown``: seconds per part
  of a scratch step.

Usage (from the repository root)::

    python -m benchmarks.learning all --procs 2        # scratch, finetune, report
    python -m benchmarks.learning scratch --procs 2 --minutes 120 --max_steps 4621
    python -m benchmarks.learning scratch --n_layers 3 --step_size 700  # the first recipe
    python -m benchmarks.learning breakdown --steps 20

Experiments go to ``<outputs>/training/learning-{scratch,finetune}``, evaluations to
``<outputs>/results/learning/``, the figure and the tables to ``docs/figures/``
(``--figures``). The CPU time given to a run is logged next
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
from gluefactory.utils.fs import atomic_write_text

from .common import REPO, STEP_PARTS, recorded, step_parts, table

logger = logging.getLogger("learning")

#: the recipe: a small LightGlue learnt from scratch (docs/training.md)
CONF = "xfeat+lightglue-photos"
PATCH = [480, 360]
NUM_KPTS = 512
EXTRACTOR = {"name": "extractors.xfeat", "max_num_keypoints": NUM_KPTS,
             "force_num_keypoints": True, "detection_threshold": 0.0, "trainable": False}  # fmt: skip
OFFICIAL_LG = {
    "name": "matchers.lightglue",
    "features": "xfeat",
    "filter_threshold": 0.1,
}
MNN = {"name": "matchers.nearest_neighbor", "mutual_check": True}
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


def train_conf(kind: str, minutes: float, precision: str | None = None,
               num_heads: int = 1, schedule: str = "step", triplets: int = 0,
               n_layers: int = 6, step_size: int = 1000, train_keypoints: int = NUM_KPTS,
               max_steps: int | None = None) -> dict:  # fmt: skip
    """The shipped recipe (:data:`CONF`) with the command line's options (``main``):
    ``scratch`` as shipped, ``finetune`` the official LighterGlue at a low lr."""
    from gluefactory.utils.conf import as_plain, compose

    root, null = photo_root(), lambda v: "null" if v is None else v  # noqa: E731
    conf = as_plain(compose(CONF, [
        f"data.data_dir={root}", f"data_val.data_dir={root}", f"train.max_minutes={minutes}",
        f"train.mixed_precision={null(precision)}", f"train.max_steps={null(max_steps)}",
        f"model.extractor.max_num_keypoints={train_keypoints}",
        f"model.matcher.num_heads={num_heads}", f"model.matcher.n_layers={n_layers}",
        f"train.lr_schedule.step_size={step_size}"]))  # fmt: skip
    if (
        schedule == "cosine"
    ):  # to 3e-5 over 2200 steps (30 minutes of a 3-layer model here)
        conf["train"].update(lr=1.5e-3, max_steps=max_steps or 2200, lr_schedule={
            "type": "cosine", "warmup": 50, "min_lr_factor": 0.02})  # fmt: skip
    if kind == "finetune":
        conf["model"]["matcher"] = dict(OFFICIAL_LG)
        conf["train"].update(
            lr=1e-5, lr_schedule={"type": "constant"}, eval_every_iter=40
        )
    if triplets:
        conf["data"].update(triplet=True, batch_size=triplets)
        conf["model"]["name"] = "triplet_pipeline"
    return conf


def run_training(kind: str, minutes: float, precision: str | None, procs: int = 1,
                 **variant) -> None:  # fmt: skip
    """Train ``learning-<kind>``; ``procs`` > 1: DDP over that many CPU processes (gloo),
    the global batch unchanged. The run's record (:func:`~benchmarks.common.recorded`)
    goes to ``learning_run.json``."""
    from gluefactory.trainer import train

    conf = train_conf(kind, minutes, precision, **variant)
    if procs > 1:
        conf["train"].update(num_devices=procs, device="cpu")
    path = settings.training_root() / f"learning-{kind}" / "learning_run.json"
    with recorded(path) as info:
        summary = train(
            f"learning-{kind}", conf, overwrite=True, distributed_run=procs > 1
        )
        info.update(steps=summary["step"], status=summary["status"],
                    mixed_precision=precision, processes=procs)  # fmt: skip
    logger.info("%s: %d steps in %.0f s wall, %.0f s CPU", kind, info["steps"],
                info["wall_s"], info["cpu_s"])  # fmt: skip


# --------------------------------------------------------------------- evaluation
#: the held-out pairs: warps of the training difficulty (the recipe's)
WARPS = {"difficulty": 0.7, "max_angle": 45, "patch_shape": PATCH}
#: the report's columns: summary keys of gluefactory.eval.hpatches / .homographies
COLUMNS = {"match_precision": "mean_match_prec", "match_recall": "mean_match_rec",
           "num_matches": "mean_num_matches", "prec@3px": "mean_prec@3px",
           **{f"H_auc@{t}px": f"H_error_ransac@{t}px" for t in (1, 3, 5)}}  # fmt: skip


def matchers(trained: bool = True, keypoints: int = NUM_KPTS, **matcher) -> dict:
    """Label -> (model config, checkpoint): the two baselines and, with ``trained``,
    the last checkpoint of each ``learning-<kind>`` run that exists (``matcher``
    overrides its matcher config), all on the same XFeat keypoints."""
    from gluefactory.experiments import checkpoint_file

    extractor = {**EXTRACTOR, "max_num_keypoints": keypoints}
    out = {
        "mutual NN": ({"extractor": extractor, "matcher": MNN}, None),
        "official LighterGlue": (
            {"extractor": extractor, "matcher": OFFICIAL_LG},
            None,
        ),
    }
    for kind in ("scratch", "finetune") if trained else ():
        try:
            checkpoint_file(f"learning-{kind}")
        except Exception as e:  # noqa: BLE001 - a missing run is reported, not fatal
            logger.warning("no %s model: %s", kind, e)
            continue
        model = {"extractor": {"max_num_keypoints": keypoints}, "matcher": matcher}
        out[f"trained: {kind}"] = (model, f"learning-{kind}")
    return out


def evaluate(models: dict, name: str, data: dict, bench: str = "homographies") -> dict:
    """Each model of :func:`matchers` on one benchmark of :mod:`gluefactory.eval`
    through its stages (export, evaluate, summarize; outputs under
    ``<outputs>/results/learning/<name>``): the summaries per model, and per image
    (the dataset's scene) the same summaries of its pairs."""
    from gluefactory.eval import stages
    from gluefactory.eval.metrics import summarize

    table, per_image, pairs = {}, {}, 0
    for label, (model, checkpoint) in models.items():
        conf = {"data": data, "model": model,
                "eval": {"progress": False, "num_worst": 0, "gt_matches": True}}  # fmt: skip
        b = stages.load_benchmark(bench, conf)
        out = settings.eval_root() / "learning" / name / label.replace(" ", "_")
        pred = stages.export_predictions(b, out, checkpoint=checkpoint)
        res = stages.evaluate(b, pred)
        table[label] = stages.summarize(b, res, out)
        scenes, pairs = np.asarray(res.scenes), len(res.scenes)
        per_image[label] = {
            str(sc): summarize({k: np.asarray(v)[scenes == sc] for k, v in res.per_pair.items()})
            for sc in np.unique(scenes)
        }  # fmt: skip
    return {"pairs": pairs, "table": table, "per_image": per_image}


def held_out_data(pairs: int = 25, right_only: bool = False, **kw) -> dict:
    """Homographies of the held-out photographs, ``pairs`` per image."""
    return {"data_dir": str(photo_root()), "glob": list(HELD_OUT), "homography": WARPS,
            "items_per_image": pairs, "right_only": right_only, **kw}  # fmt: skip


def held_out(models: dict, pairs: int = 25, right_only: bool = False) -> dict:
    """The held-out numbers: ``pairs`` pairs per held-out photograph, 512 keypoints."""
    name = "held-out" + "-right-only" * right_only
    return evaluate(models, name, held_out_data(pairs, right_only))


def training_images(models: dict) -> dict:
    """New pairs (the test split's seeds) of the scikit-image *training* photographs,
    to set beside the held-out ones: how much of the gap is generalisation."""
    names = sorted(
        p.name for p in photo_root().glob("skimage_*") if p.name not in HELD_OUT
    )
    return evaluate(models, "training-images", held_out_data(3, glob=names))


def hpatches(models: dict) -> dict:
    """The built-in HPatches-format set (short side 480), 1024 keypoints."""
    from gluefactory.datasets.sources.builtin import ensure_builtin

    data = {"data_dir": str(ensure_builtin("hpatches"))}
    return evaluate(models, "hpatches", data, bench="hpatches")


def cell(summaries: dict, column: str) -> str:
    v = summaries[COLUMNS[column]]
    sem = summaries.get(COLUMNS[column].replace("mean_", "sem_", 1), math.nan)
    if column == "num_matches":
        return f"{v:.1f}"
    return f"{v:.3f} ± {sem:.3f}" if column.startswith("match_") else f"{v:.3f}"


def baselines(pairs: int) -> str:
    """The two baselines on ``pairs`` pairs of each scikit-image photograph: how hard
    each image is."""
    res = evaluate(matchers(trained=False), "baselines",
                   held_out_data(pairs, glob=["skimage_*"]))  # fmt: skip
    text = f"Per scikit-image photograph, {pairs} pairs each, precision / recall:\n\n"
    print(text + per_image_table(res))
    return text


def per_image_table(res: dict) -> str:
    images = sorted(next(iter(res["per_image"].values())))
    rows = [[m] + [f"{d[i]['mean_match_prec']:.2f} / {d[i]['mean_match_rec']:.2f}"
                   for i in images] for m, d in res["per_image"].items()]  # fmt: skip
    return table(["matcher", *images], rows)


def thresholds(values: list[float], pairs: int = 25) -> str:
    """Held-out precision / recall of the trained scratch model at each
    ``filter_threshold``: whether any operating point reaches both targets."""
    models = {
        th: matchers(filter_threshold=th).get("trained: scratch") for th in values
    }
    if None in models.values():
        raise SystemExit("thresholds: no learning-scratch run (train it first).")
    res = held_out({f"filter_threshold {th}": m for th, m in models.items()}, pairs)
    cols = ["match_precision", "match_recall", "num_matches"]
    rows = [(th, *(cell(r, c) for c in cols)) for th, r in res["table"].items()]
    text = f"Trained scratch model, {res['pairs']} held-out pairs:\n\n" + table(
        ["model", *cols], rows
    )
    print(text)
    return text


def breakdown(steps: int, precision: str | None, batch: int = 4,
              n_layers: int = 6) -> str:  # fmt: skip
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
    from gluefactory.trainer.report import read_metrics
    from gluefactory.visualization.viz2d import plot_curves, save

    runs = {kind: read_metrics(settings.training_root() / f"learning-{kind}")
            for kind in ("scratch", "finetune")}  # fmt: skip
    runs = {kind: records for kind, records in runs.items() if records}
    panels = [("train", "loss/total", "training loss"),
              ("val", "match_precision", "validation match precision"),
              ("val", "match_recall", "validation match recall")]  # fmt: skip
    ylim = {"match_precision": (0, 1), "match_recall": (0, 1)}
    return save(plot_curves(runs, panels, ylim), figures / "learning_curves.png")


def markdown(results: dict) -> list[str]:
    """The report's tables, as in docs/training.md."""
    lines = []
    for name, res in results.items():
        rows = [[m, *(cell(r, c) for c in COLUMNS)] for m, r in res["table"].items()]
        lines += [f"**{name}** ({res['pairs']} pairs)", "",
                  table(["matcher", *COLUMNS], rows), ""]  # fmt: skip
        if name == "held-out":
            lines += ["Per held-out image, match precision / recall:", "",
                      per_image_table(res), ""]  # fmt: skip
    return lines


def report(figures: Path, pairs: int = 25) -> str:
    models = matchers()
    results = {
        "held-out": held_out(models, pairs),
        "held-out, one view warped": held_out(models, pairs, right_only=True),
        "training images, new pairs": training_images(models),
        "hpatches": hpatches(matchers(keypoints=1024)),
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
    tables = {k: {"pairs": r["pairs"], "table": r["table"]} for k, r in results.items()}
    atomic_write_text(figures / "learning_results.json",
                      json.dumps({"runs": runs, "results": tables}, indent=1))  # fmt: skip
    logger.info("figure %s\n%s", curve, text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["scratch", "finetune", "report", "all", "baselines",
                                    "breakdown", "thresholds"])  # fmt: skip
    p.add_argument("--minutes", type=float, default=30.0, help="scratch: wall time")
    p.add_argument("--max_steps", type=int, help="scratch: stop after this many steps")
    p.add_argument("--schedule", choices=["step", "cosine"], default="step",
                   help="scratch: lr schedule (step: the documented recipe)")  # fmt: skip
    p.add_argument("--step_size", type=int, default=1000,
                   help="scratch, step schedule: halve the lr every this many steps")  # fmt: skip
    p.add_argument("--num_heads", type=int, default=1, help="scratch: attention heads")
    p.add_argument("--n_layers", type=int, default=6,
                   help="scratch, breakdown: layers of the small LightGlue")  # fmt: skip
    p.add_argument("--train_keypoints", type=int, default=NUM_KPTS,
                   help="scratch: XFeat keypoints per image in training (the report: 512)")  # fmt: skip
    p.add_argument("--triplets", type=int, default=0,
                   help="scratch: batches of this many homography triplets")  # fmt: skip
    p.add_argument("--finetune_minutes", type=float, default=10.0)
    p.add_argument(
        "--procs", type=int, default=1, help="DDP over this many CPU processes"
    )
    p.add_argument("--mixed_precision", choices=["bfloat16", "none"], default="none")
    p.add_argument("--pairs", type=int, default=25,
                   help="report, thresholds, baselines: pairs per photograph")  # fmt: skip
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
        thresholds([0.02, 0.05, 0.1, 0.2, 0.3], args.pairs)
    if args.what == "breakdown":
        breakdown(args.steps, precision, args.batch, args.n_layers)
    if args.what in ("scratch", "all"):
        variant = {k: getattr(args, k) for k in ("num_heads", "schedule", "triplets",
                   "n_layers", "step_size", "train_keypoints", "max_steps")}  # fmt: skip
        run_training("scratch", args.minutes, precision, args.procs, **variant)
    if args.what in ("finetune", "all"):
        run_training("finetune", args.finetune_minutes, precision, args.procs)
    if args.what in ("report", "all"):
        report(args.figures, args.pairs)


if __name__ == "__main__":
    main()
