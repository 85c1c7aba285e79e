"""Does GlueStick learn? A small one trained from scratch on the CPU, measured on held-out
photographs, beside the nearest-neighbour line baseline (docs/lines.md, learning results).

The recipe is the shipped config ``xfeat+lsd+gluestick-photos``: a GlueStick of 3 x (self,
cross) layers, 96-D, on homographies of the photographs bundled with scikit-image (four
held out), XFeat points + LSD lines in a wireframe, trained by ``python -m
gluefactory.train`` for ``--minutes`` of wall time. The held-out numbers come from
``gluefactory.eval.homographies`` (its stage functions, the config's
``benchmarks.homographies`` section: the four held-out photographs, the training's
homography distribution) for the untrained model (the same seed, no training), the
trained checkpoint (``--checkpoint``) and ``matchers.line_nearest_neighbor`` on the same
points and lines.

Usage (from the repository root)::

    python -m benchmarks.learning_lines run --minutes 30    # train (normal priority)
    python -m benchmarks.learning_lines report              # table + curves
    python -m benchmarks.learning_lines report --filters 0.1 0.05   # + other thresholds

``run`` records wall and CPU time, steps and the load average sampled every 30 s
(``learning_lines_run.json`` in the experiment). ``report`` writes ``docs/figures/learning_lines_{table.md,
results.json,curves.png}`` (``--figures``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from gluefactory import settings
from gluefactory.trainer.report import read_metrics
from gluefactory.utils.fs import atomic_write_text

from .common import REPO, recorded, table

logger = logging.getLogger("learning_lines")

CONF = "xfeat+lsd+gluestick-photos"
EXPERIMENT = "gs-photos"
LINE_NN = {"name": "matchers.line_nearest_neighbor", "mutual_check": True}
#: the reported columns: (summary key, header)
POINT_COLS = (("mean_prec@3px", "point prec@3px"), ("mean_num_matches", "point matches"),
              ("H_error_ransac@3px", "H AUC@3px"))  # fmt: skip
LINE_COLS = (("mean_line_prec", "line precision"), ("mean_line_rec", "line recall"),
             ("mean_num_line_matches", "line matches"))  # fmt: skip
#: the columns shown with their standard error over pairs (``sem_*`` of the summaries)
SEM_COLS = ("mean_line_prec", "mean_line_rec")
#: the curves: metrics.jsonl key -> label
LOSSES = {"loss/total": "total", "loss/line_assignment_nll": "line NLL",
          "loss/assignment_nll": "point NLL"}  # fmt: skip
CURVES = {"line_match_precision": "line precision", "line_match_recall": "line recall",
          "match_precision": "point precision", "match_recall": "point recall"}  # fmt: skip
CURVES_Y = next(iter(CURVES))


# ----------------------------------------------------------------------- training
def run_training(experiment: str, minutes: float, overrides: list[str]) -> dict:
    """``python -m gluefactory.train EXPERIMENT --conf xfeat+lsd+gluestick-photos``
    (in this process) for ``minutes``; its record (:func:`~benchmarks.common.recorded`:
    wall, CPU, load) and steps go to ``learning_lines_run.json`` in the experiment."""
    from gluefactory.train import main as train_main

    argv = [experiment, "--conf", CONF, "--overwrite",
            f"train.max_minutes={minutes}", *overrides]  # fmt: skip
    path = settings.training_root() / experiment / "learning_lines_run.json"
    with recorded(path) as info:
        summary = train_main(argv) or {}
        info.update(command="python -m gluefactory.train " + " ".join(argv),
                    steps=summary.get("step"), status=summary.get("status"))  # fmt: skip
    logger.info("%d steps in %.0f s wall, %.0f s CPU, load %s", info["steps"] or 0,
                info["wall_s"], info["cpu_s"], info["load_1min"]["mean"])  # fmt: skip
    return info


# --------------------------------------------------------------------- evaluation
def evaluate(
    experiment: str,
    out_root: Path,
    items: int | None = None,
    overwrite: bool = True,
    filters: Sequence[float] = (),
) -> dict:
    """Held-out summaries of ``untrained``, ``trained`` and ``line NN``, all three through
    ``gluefactory.eval.homographies`` with the experiment's model config (same points,
    same lines, same pairs); ``filters``: the trained model again at these match
    thresholds (``model.matcher.filter_threshold``: its precision / recall trade-off)."""
    from omegaconf import OmegaConf

    from gluefactory.eval import stages
    from gluefactory.eval.io import compose_eval_conf

    dotlist = [f"data.items_per_image={items}"] if items else []
    conf = compose_eval_conf("homographies", checkpoint=experiment, dotlist=dotlist)
    untrained = OmegaConf.to_container(conf, resolve=True)
    nn = OmegaConf.to_container(conf, resolve=True)
    nn["model"]["matcher"] = dict(LINE_NN)
    runs = {  # row -> (results folder, config, checkpoint)
        "untrained GlueStick": ("untrained", untrained, None),
        "trained GlueStick": ("trained", conf, experiment),
        **{f"trained GlueStick, filter {f:g}": (f"trained-filter{f:g}", OmegaConf.merge(
            conf, {"model": {"matcher": {"filter_threshold": f}}}), experiment)
           for f in filters},
        "line NN (mutual)": ("line", nn, None),
    }  # fmt: skip
    results = {}
    images = OmegaConf.select(conf, "data.glob") or []
    pairs = len(images) * int(OmegaConf.select(conf, "data.items_per_image", default=5))
    for name, (folder, c, checkpoint) in runs.items():
        torch.manual_seed(0)  # the untrained model: the training's initial weights
        results[name] = stages.run("homographies", out_root / folder, c,
                                   overwrite=overwrite, checkpoint=checkpoint)  # fmt: skip
        results[name]["num_pairs"] = pairs
    return results


def markdown(results: dict, run: dict | None, last_step: int | None = None) -> str:
    """The held-out table, under the training run's record; ``last_step``: the
    experiment's last logged step, said when the experiment went on after ``run``."""

    def fmt(s: dict, k: str) -> str:
        v, sem = s.get(k), s.get(k.replace("mean_", "sem_", 1))
        if v is None or math.isnan(v):
            return "n/a"
        text = f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"
        return text + (f" ± {sem:.3f}" if k in SEM_COLS and sem is not None else "")

    cols = (*LINE_COLS, *POINT_COLS)
    rows = [[m, *(fmt(s, k) for k, _ in cols)] for m, s in results.items()]
    pairs = next(iter(results.values())).get("num_pairs")
    head = [f"Held-out homographies: {pairs} pairs (n/a: no match; ± the standard "
            "error over pairs)."]  # fmt: skip
    if run:
        load = run["load_1min"]
        head.append(f"Training: `{run['command']}`, started {run['started_utc']} UTC, "
                    f"{run['steps']} steps in {run['wall_s'] / 60:.1f} min wall "
                    f"({run['cpu_s'] / 60:.1f} min CPU), {run['cpu']}, "
                    f"{run['threads']} threads, 1-min load average {load['min']}-"
                    f"{load['max']} (mean {load['mean']}).")  # fmt: skip
        if last_step and run["steps"] and last_step > run["steps"]:
            head.append(f"The experiment went on after that run (`--restore`): the "
                        f"trained rows are its last checkpoint, step {last_step}.")  # fmt: skip
    return "\n\n".join([*head, table(["matcher", *(h for _, h in cols)], rows)]) + "\n"


def curves(experiment: str, out: Path) -> Path:
    """Training loss and held-out validation metrics over steps (PNG)."""
    from gluefactory.visualization.viz2d import plot_curves, save

    runs = {"": read_metrics(settings.training_root() / experiment)}
    return save(
        plot_curves(
            runs,
            [
                ("train", LOSSES, "training loss"),
                ("val", CURVES, "held-out validation (16 pairs, filter 0.2)"),
            ],
            {CURVES_Y: (0, 1)},
        ),
        out,
    )


def report(
    experiment: str,
    figures: Path,
    items: int | None = None,
    filters: Sequence[float] = (),
) -> str:
    run_file = settings.training_root() / experiment / "learning_lines_run.json"
    run = json.loads(run_file.read_text()) if run_file.exists() else None
    out = settings.eval_root() / "learning_lines" / experiment
    results = evaluate(experiment, out, items, filters=filters)
    records = read_metrics(settings.training_root() / experiment)
    steps = [r["step"] for r in records if "step" in r]
    text = markdown(results, run, max(steps, default=None))
    figures.mkdir(parents=True, exist_ok=True)
    atomic_write_text(figures / "learning_lines_table.md", text)
    atomic_write_text(figures / "learning_lines_results.json",
                      json.dumps({"run": run, "results": results}, indent=1))  # fmt: skip
    curves(experiment, figures / "learning_lines_curves.png")
    print(text)
    return text


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("what", choices=["run", "report", "all"])
    p.add_argument("--experiment", default=EXPERIMENT)
    p.add_argument("--minutes", type=float, default=30.0, help="run: wall time")
    p.add_argument("--threads", type=int, default=1, help="run: torch threads (1: "
                   "on a loaded 2-core machine, 2 threads spin and run slower)")  # fmt: skip
    p.add_argument("--items", type=int, help="report: pairs per held-out photograph "
                   "(default: the config's, 10)")  # fmt: skip
    p.add_argument("--filters", type=float, nargs="*", default=[],
                   help="report: the trained model also at these filter thresholds")  # fmt: skip
    p.add_argument("--figures", type=Path, default=REPO / "docs" / "figures")
    p.add_argument(
        "overrides", nargs="*", help="run: key=value for the training config"
    )
    args = p.parse_intermixed_args(argv)  # overrides before or after the options
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s %(name)s] %(message)s")
    torch.set_num_threads(args.threads)
    if args.what in ("run", "all"):
        run_training(args.experiment, args.minutes, args.overrides)
    if args.what in ("report", "all"):
        report(args.experiment, args.figures, args.items, args.filters)


if __name__ == "__main__":
    main()
