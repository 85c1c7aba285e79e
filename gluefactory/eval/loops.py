"""The two loops of an evaluation: the model over every pair (export), and the
estimator-free metrics over every pair of the stored predictions (records).

Both take a benchmark declaration ``bench`` (:class:`gluefactory.eval.pipeline.
EvalPipeline`) for its hooks; neither writes anything but ``predictions.h5``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..utils.errors import ConfigError, DataError
from ..utils.tensor import batch_to_device
from . import results as rio
from .export import memoized_extractor
from .records import PairRecord

logger = logging.getLogger(__name__)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def export_loop(
    bench: Any, dataset, model: nn.Module, pred_path: Path, ehash: str
) -> dict[str, float]:
    """Run ``model`` on every pair of ``dataset`` and write ``pred_path`` (keypoints in
    original pixels, tagged ``ehash``). Returns the timings (``export_s``, ``model_s``,
    ``pairs``, ``extractions``: distinct images the extractor ran on)."""
    t0 = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loader = dataset.get_data_loader("test", shuffle=False)
    model = model.to(device).eval()
    model_s = 0.0
    with (
        torch.inference_mode(),
        memoized_extractor(model) as memo,
        rio.PredictionWriter(pred_path, ehash) as writer,
    ):
        for data in tqdm(
            loader, desc=f"{bench.name}: export", disable=not bench.conf.eval.progress
        ):
            if len(data["name"]) != 1:
                raise ConfigError(f"{bench.name} needs data.batch_size=1.")
            data = batch_to_device(data, device)
            _sync(device)
            ts = time.perf_counter()
            pred = model(data)
            _sync(device)
            model_s += time.perf_counter() - ts
            writer.write(data["name"][0], bench.to_export(data, pred))
    n_pairs = len(loader)
    extractions = (memo.calls - memo.hits) if memo else 2 * n_pairs
    if memo:
        logger.info(
            "Exported %d pairs: %d distinct images extracted (%d reused).",
            n_pairs,
            extractions,
            memo.hits,
        )
    return {
        "export_s": time.perf_counter() - t0,
        "model_s": model_s,
        "pairs": n_pairs,
        "extractions": extractions,
    }


def record_loop(
    bench: Any, loader, pred_path: Path
) -> tuple[dict[str, list[float]], list[PairRecord]]:
    """The :class:`PairRecord` and the estimator-free metrics of every pair.

    Per pair: the predictions are read and scaled to the loader's pixels, the record
    is built, the point ground truth (``bench.point_ground_truth``) and with lines the
    line ground truth (``bench.line_ground_truth``) are set once, then its per-match
    errors (``bench.match_errors``), and the
    benchmark's ``pair_metrics(record, data, pred)`` are collected.
    """
    per_pair: dict[str, list[float]] = {}
    records: list[PairRecord] = []
    with rio.PredictionReader(pred_path) as reader:
        for data in tqdm(
            loader,
            desc=f"{bench.name}: evaluate",
            disable=not bench.conf.eval.progress,
        ):
            name = data["name"][0]
            if name not in reader:
                raise DataError(
                    f"{pred_path} has no predictions for pair {name!r} (the dataset "
                    "changed?): rerun with --overwrite."
                )
            pred = bench.from_export(data, reader.read(name))
            record = PairRecord.from_batch(data, pred)
            record.gt_matches0 = bench.point_ground_truth(data, pred)
            if record.num_lines is not None:
                record.gt_line_matches0 = bench.line_ground_truth(data, pred)
            record.match_error = bench.match_errors(record)
            for k, v in bench.pair_metrics(record, data, pred).items():
                per_pair.setdefault(k, []).append(float(v))
            records.append(record)
    return per_pair, records
