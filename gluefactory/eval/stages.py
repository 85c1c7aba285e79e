"""The evaluation as three stages whose outputs are files, as in hloc.

    from gluefactory.eval import stages

    bench = stages.load_benchmark("homographies", {"data": {"data_dir": "photos"},
                                                   "model": model_conf})
    pred = stages.export_predictions(bench, "outputs/my_eval")   # predictions.h5
    results = stages.evaluate(bench, pred)                      # per-pair metrics
    summaries = stages.summarize(bench, results, "outputs/my_eval")

1. :func:`export_predictions`: the model on every pair, predictions stored with
   keypoints in ORIGINAL-image pixels, tagged with the provenance hash
   (:mod:`.provenance`); a complete export of the same hash is reused.
2. :func:`evaluate`: the pairs again from the evaluation loader (HPatches: the same
   480 px images; MegaDepth-1500: original resolution), one
   :class:`~gluefactory.eval.records.PairRecord` per pair, the estimator-free metrics
   (:mod:`.loops`), then the robust estimator at each ``eval.ransac_th`` in worker
   processes (:mod:`.sweep`).
3. :func:`summarize`: the best threshold by mAA, AUCs, means and medians
   (:func:`gluefactory.eval.metrics.summarize`), the benchmark's summaries over all
   pairs at once (``dataset_summaries``: ETH3D's AP); with an output folder also
   ``results.h5``, ``sweep.json``, ``summaries.json``, ``timings.json`` and the figures.

:func:`run` chains them with the guards and caches of the command line
(``python -m gluefactory.eval.<benchmark>``): changing only ``eval.*`` never reruns
the network. ``bench`` is a benchmark instance (:class:`gluefactory.eval.pipeline.
EvalPipeline`) or a benchmark name with its ``conf``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from torch import nn

from ..datasets import get_dataset
from ..utils import fs
from . import provenance
from . import results as rio
from .base import get_benchmark
from .loops import export_loop, record_loop
from .metrics import summarize as summarize_metrics
from .metrics import threshold_name
from .records import PairRecord
from .sweep import PoolStarter, run_sweep, workers_for
from .tables import sweep_table

logger = logging.getLogger(__name__)

#: a benchmark declaration (:class:`gluefactory.eval.pipeline.EvalPipeline`, duck-typed:
#: the stages do not import the class they serve) or its registry name
Benchmark = Any

PREDICTIONS, RESULTS, SUMMARIES = "predictions.h5", "results.h5", "summaries.json"


@dataclasses.dataclass
class EvalResults:
    """What :func:`evaluate` gives :func:`summarize`: one entry per pair, loader order.

    ``per_pair``: estimator-free metric -> values; ``sweep``: threshold -> robust metric
    -> values; ``records``: the pairs' records (figures read their matches and
    correctness); ``open_dataset``: the evaluation dataset with images, built when the
    figures first read :attr:`dataset` (the metrics loop decodes none where it can).
    """

    per_pair: dict[str, list[float]]
    sweep: dict[float, dict[str, list[float]]]
    records: list[PairRecord]
    timings: dict[str, float]
    open_dataset: Callable[[], Any] | None = dataclasses.field(default=None, repr=False)
    export_hash: str | None = None  # of the predictions evaluated

    @functools.cached_property
    def dataset(self) -> Any:
        """The test split of the evaluation data, with images (None: not given)."""
        return None if self.open_dataset is None else self.open_dataset()

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    @property
    def scenes(self) -> list[str]:
        return [r.scene for r in self.records]


def load_benchmark(bench: Benchmark, conf: Any = None) -> Benchmark:
    """A benchmark instance from a name (``"hpatches"``) and a config (checked)."""
    if isinstance(bench, str):
        return get_benchmark(bench)(conf)
    if conf is not None:
        raise TypeError("conf is for a benchmark given by name; this one is built.")
    return bench


def export_predictions(
    bench: Benchmark,
    output_dir: str | Path,
    conf: Any = None,
    *,
    model: nn.Module | None = None,
    checkpoint: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Stage 1: ``output_dir/predictions.h5`` of the benchmark's data and model.

    Reused when it holds a complete export of the same data + model config and data
    files; else taken from a sibling folder of the same hash (not with ``overwrite``);
    else the model runs. ``model``: an already built model (e.g. during training),
    else it is built from ``conf.model`` or loaded from ``checkpoint`` when needed.
    """
    bench = load_benchmark(bench, conf)
    out = Path(output_dir)
    pred_path = out / PREDICTIONS
    dataset = get_dataset(bench.conf.data.name)(bench.conf.data)  # before any write
    out.mkdir(parents=True, exist_ok=True)
    saved = provenance.saved_conf(bench.conf, checkpoint)
    ehash = provenance.export_hash(saved, provenance.data_fingerprint(dataset))
    if not overwrite and rio.predictions_valid(pred_path, ehash):
        logger.info("Using the cached predictions %s.", pred_path)
        return pred_path
    if rio.export_hash_of(pred_path) is not None:
        logger.info(
            "%s was made from other data files (or another model): exporting again.",
            pred_path,
        )
    # overwrite means "run the network again": never reuse another export
    if overwrite or not provenance.link_cached_predictions(pred_path, ehash):
        model = bench.build_model(checkpoint) if model is None else model
        bench.timings.update(export_loop(bench, dataset, model, pred_path, ehash))
    # results.h5 and summaries.json of other predictions stay until replaced: they
    # name the predictions they come from (results.results_current)
    return pred_path


def _test_split(dataset_cls: type, data_conf: Any) -> Any:
    return dataset_cls(data_conf).get_dataset("test")


def evaluate(
    bench: Benchmark, predictions: str | Path, conf: Any = None
) -> EvalResults:
    """Stage 2: records and per-pair metrics of ``predictions`` (a predictions.h5),
    robust metrics at every threshold of ``eval.ransac_th``. Where the dataset can
    (``sizes_without_images``), its items come without images (``read_image: false``):
    the metrics need sizes and geometry, not pixels (the figures decode their pairs)."""
    bench = load_benchmark(bench, conf)
    t0 = time.perf_counter()
    data_conf = bench.eval_data_conf()
    dataset_cls = get_dataset(data_conf.name)
    sizes_only = dataset_cls.sizes_without_images and data_conf.get("read_image", True)
    loader = dataset_cls(
        {**OmegaConf.to_container(data_conf, resolve=True), "read_image": False}
        if sizes_only
        else data_conf
    ).get_data_loader("test", shuffle=False)
    ths = bench.thresholds
    nworkers = workers_for(len(loader), len(ths), bench.conf.eval.workers)
    pool = PoolStarter(nworkers) if nworkers > 1 else None  # starts meanwhile
    try:
        per_pair, records = record_loop(bench, loader, Path(predictions))
        metrics_s = time.perf_counter() - t0
        sweep, sweep_s, workers = {}, 0.0, 0  # no robust estimation without thresholds
        if ths:
            sweep, sweep_s, workers = run_sweep(
                bench.estimator_kind,
                bench.estimator_conf,
                ths,
                records,
                type(bench).robust_metrics,
                workers=bench.conf.eval.workers,
                progress=bench.conf.eval.progress,
                pool=pool,
            )
    finally:
        if pool is not None:
            pool.close()
    timings = {"metrics_s": metrics_s, "sweep_s": sweep_s, "sweep_workers": workers}
    return EvalResults(
        per_pair=per_pair,
        sweep={th: _columns(rows) for th, rows in sweep.items()},
        records=records,
        timings=timings,
        open_dataset=(  # the figures' images: another instance, built only if drawn
            functools.partial(_test_split, dataset_cls, data_conf)
            if sizes_only
            else lambda: loader.dataset
        ),
        export_hash=rio.export_hash_of(Path(predictions)),
    )


def summarize(
    bench: Benchmark,
    results: EvalResults,
    output_dir: str | Path | None = None,
    conf: Any = None,
) -> dict[str, float]:
    """Stage 3: the summaries of the best threshold (by mAA of ``bench.robust_key``),
    with upstream's key names too. With ``output_dir``: writes ``results.h5``,
    ``sweep.json``, the figures, ``summaries.json`` and ``timings.json``."""
    bench = load_benchmark(bench, conf)
    t0 = time.perf_counter()
    by_th = {
        th: summarize_metrics(res, bench.auc_metrics, round=4)
        for th, res in results.sweep.items()
    }
    per_pair = results.per_pair
    if by_th:  # else a benchmark without robust estimation
        mkey = f"{bench.robust_key}_mAA"
        best = max(by_th, key=lambda th: (by_th[th][mkey], -th))
        per_pair = {**per_pair, **results.sweep[best]}
    summaries = summarize_metrics(per_pair, bench.auc_metrics, round=4)
    if by_th:
        summaries["ransac_th"] = best
    summaries.update(bench.dataset_summaries(results))
    summaries.update(bench.upstream_aliases(summaries))
    if len(by_th) > 1:
        print(
            sweep_table(
                bench.robust_key,
                bench.conf.eval.estimator,
                by_th,
                best,
                results.timings["sweep_s"],
                results.timings["sweep_workers"],
            )
        )
    if output_dir is None:
        return summaries
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rio.write_results(
        out / RESULTS,
        per_pair,
        results.names,
        results.scenes,
        summaries,
        sweep={threshold_name(th): r for th, r in results.sweep.items()},
        export_hash=results.export_hash,
    )
    rio.write_json(
        out / "sweep.json",
        {
            f"{k}@th={threshold_name(th)}": v
            for th, s in by_th.items()
            for k, v in s.items()
            if k.startswith(bench.robust_key)
        },
    )
    final = dataclasses.replace(results, per_pair=per_pair)
    figures = bench.make_figures(out, final)
    rio.write_json(out / SUMMARIES, summaries)
    timings = {**bench.timings, **results.timings}
    timings["eval_s"] = (results.timings["metrics_s"] + results.timings["sweep_s"]) + (
        time.perf_counter() - t0
    )
    rio.write_json(out / "timings.json", timings)
    logger.info("Wrote %s and %d figure(s).", out, len(figures))
    return summaries


def results_lock(output_dir: str | Path):
    """One writer per results folder (docs/errors.md, rule 3): the lock
    ``.<tag>.lock`` beside ``output_dir``, holding the PID and host; a second run on
    the same folder raises :class:`~gluefactory.utils.errors.LockedError` naming the
    holder (exit 2), a lock left by a killed run is taken over."""
    out = Path(output_dir)
    return fs.file_lock(
        out.parent / f".{out.name}.lock", wait=False, what=f"Results folder {out}"
    )


def run(
    bench: Benchmark,
    output_dir: str | Path,
    conf: Any = None,
    *,
    overwrite: bool = False,
    overwrite_eval: bool = False,
    model: nn.Module | None = None,
    checkpoint: str | None = None,
) -> dict[str, float]:
    """The three stages with the command line's guards: ``output_dir/conf.yaml``
    records the config; results of another data/model config are replaced only with
    ``overwrite``, of another ``eval`` config only with ``overwrite_eval`` (the
    predictions are then reused); complete results of the same config are returned
    as they are. Returns the summaries.

    Nothing is deleted or written before the config is valid (it was checked when the
    benchmark was built), before the model is built where no predictions of this
    benchmark can be reused (its weights are found, or refused, before any download
    of data; with ``checkpoint`` the weights must fit the model) and before the data
    is found; all of it under :func:`results_lock`. Weights or data that cannot be had
    leave no results folder."""
    bench = load_benchmark(bench, conf)
    out = Path(output_dir)
    saved = provenance.saved_conf(bench.conf, checkpoint)
    # predictions here or in a sibling tag may make the model unneeded (eval-only
    # reruns); else it is built first (~0.1 s), its weights found or refused
    maybe_cached = not overwrite and any(out.parent.glob(f"*/{PREDICTIONS}"))
    if model is None and (checkpoint or not maybe_cached):
        model = bench.build_model(checkpoint)
    with results_lock(out):
        if out.is_dir():  # else export_predictions makes it, once the data is found
            fs.remove_stale_temporaries(out)  # only ours: we hold the lock
            provenance.check_results_folder(out, saved, overwrite, overwrite_eval)
        bench.timings = {}
        pred = export_predictions(
            bench, out, model=model, checkpoint=checkpoint, overwrite=overwrite
        )
        cached = not (overwrite or overwrite_eval) and rio.results_current(
            out, rio.export_hash_of(pred)
        )
        if cached:
            logger.info(
                "Using the cached results %s (--overwrite_eval recomputes).", out
            )
            summaries = rio.read_json(out / SUMMARIES)
        else:
            summaries = summarize(bench, evaluate(bench, pred), out)
        # last: until the new results are whole, conf.yaml describes the old ones
        with fs.atomic_path(out / "conf.yaml", ".yaml") as tmp:
            OmegaConf.save(OmegaConf.create(saved), tmp)
        return summaries


def _columns(rows: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            out.setdefault(k, []).append(float(v))
    return out
