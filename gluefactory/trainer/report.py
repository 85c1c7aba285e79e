"""What a run reports (rank 0): the log, TensorBoard scalars and figures, metrics.jsonl.

The x-axis of TensorBoard is the number of training samples seen (``--log_it``: the
number of optimizer steps). ``metrics.jsonl`` has one JSON line per record with
``kind`` (train, val, test), ``step``, ``samples``, ``epoch`` and the values.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from ..utils.errors import DataError
from ..utils.fs import atomic_write_text
from . import distributed
from .logs import Averages, Board, match_figures

logger = logging.getLogger(__name__)

SHOWN = ("loss/total", "loss/last", "match_recall", "match_precision")


def read_metrics(folder: str | Path) -> list[dict]:
    """The records of an experiment folder's ``metrics.jsonl``, in order (the learning
    curves without TensorBoard); [] without the file. A line that is not JSON is a
    DataError naming the file and line."""
    path = Path(folder) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{path}, line {i}: not a JSON record ({e}).") from e
    return records


class Reporter:
    def __init__(self, folder: Path, dist: distributed.Dist, log_it: bool):
        self.dist, self.log_it = dist, log_it
        self.board = Board(folder if dist.main else None)
        self.file = Path(folder) / "metrics.jsonl"

    def _x(self, c: dict) -> int:
        return c["step"] if self.log_it else c["samples"]

    def _append(self, kind: str, values: dict, c: dict) -> None:
        rec = {
            "kind": kind,
            "step": c["step"],
            "samples": c["samples"],
            "epoch": c["epoch"],
        }
        for k, v in values.items():  # strict JSON: non-finite values become null
            if not k.startswith("_"):
                rec[k] = v if not isinstance(v, float) or math.isfinite(v) else None
        with open(self.file, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def train(self, window: Averages, extra: dict, c: dict, total_steps: int) -> None:
        """Reduce a window of training values over the ranks and report it (collective)."""
        total = Averages()
        for sums, counts in distributed.gather_objects(window.state(), self.dist):
            total.merge(sums, counts)
        values = {**total.means(), **extra}
        if not self.dist.main:
            return
        text = " ".join(f"{k} {values[k]:.4g}" for k in SHOWN if k in values)
        logger.info(
            "[E %d | step %d/%d] %s lr %.3g",
            c["epoch"],
            c["step"],
            total_steps,
            text,
            values["lr"],
        )
        self.board.scalars("training", values, self._x(c))
        self._append("train", values, c)

    def val(self, res: dict, figures: dict, c: dict) -> None:
        if not self.dist.main:
            return
        text = " ".join(
            f"{k} {v:.4g}" for k, v in res.items() if not k.startswith("loss/num_")
        )
        logger.info("[Validation step %d epoch %d] %s", c["step"], c["epoch"], text)
        self.board.scalars("val", res, self._x(c))
        for tag, fig in figures.items():
            self.board.figure(f"figures/{tag}", fig, self._x(c))
        self._append("val", res, c)

    def test(self, results: dict[str, dict], c: dict) -> None:
        if not self.dist.main:
            return
        for name, summary in results.items():
            self.board.scalars(f"test/{name}", summary, self._x(c))
        self._append(
            "test", {f"{n}/{k}": v for n, s in results.items() for k, v in s.items()}, c
        )

    def rewind(self, c: dict) -> None:
        """A run restored at counters ``c`` redoes what came after its checkpoint: drop
        those records from ``metrics.jsonl`` and TensorBoard, so nothing appears twice
        (a checkpoint is written after the records of its own step)."""
        if not self.dist.main:
            return
        self.board.purge_step = self._x(c) + 1
        if not self.file.exists():
            return
        lines = self.file.read_text(encoding="utf-8").splitlines()
        kept = [
            line
            for line in lines
            if line.strip() and json.loads(line)["step"] <= c["step"]
        ]
        if len(kept) != len(lines):
            atomic_write_text(self.file, "".join(line + "\n" for line in kept))

    def close(self) -> None:
        self.board.close()


def figure_hook(plot, model, dist: distributed.Dist, figures: dict) -> Callable | None:
    """The ``on_batch`` callback of validation that draws ``train.plot`` batches.

    ``plot``: N (match figures of the first N batches of rank 0) or [N, "dotted.fn"]
    with ``fn(pred, data) -> {name: figure}``.
    """
    if not plot:
        return None
    if isinstance(plot, int):
        n, fn = plot, match_figures
    else:
        n, path = plot
        module, _, attr = str(path).rpartition(".")
        n, fn = int(n), getattr(importlib.import_module(module), attr)
    gt = getattr(model, "ground_truth", None)

    def on_batch(i, pred, data):
        if not dist.main or i >= n:
            return
        if "gt_matches0" not in data and gt is not None and "matches0" in data:
            labels = gt(data)
            pred = {
                **pred,
                **{
                    k if k.startswith("gt_") else f"gt_{k}": v
                    for k, v in labels.items()
                },
            }
        for k, fig in fn(pred, data).items():
            figures[f"val_{i}/{k}"] = fig

    return on_batch
