"""The evaluation pipeline shared by every benchmark: export once, evaluate from the cache.

1. **Export**: run the model on every pair of ``data`` and store the predictions in
   ``predictions.h5`` with keypoints in ORIGINAL-image pixels (divided by the view's
   ``scales``), written atomically and tagged with a hash of the data + model config
   and of the data's files (names, sizes, times: :mod:`gluefactory.utils.fingerprint`).
   Where pairs share an image (HPatches: image 1 is in five pairs), the extractor runs
   once per distinct image (:func:`memoized_extractor`).
2. **Evaluate**: reload the pairs with :meth:`EvalPipeline.eval_data_conf` (HPatches:
   the same 480 px images; MegaDepth-1500: original resolution), multiply the keypoints
   by that loader's scales, compute the estimator-free metrics, then run the robust
   estimator for each ``eval.ransac_th`` in parallel (:mod:`gluefactory.eval.sweep`),
   keep the threshold with the best mAA and summarise.

Changing only ``eval.*`` never reruns the network: the predictions are reused when
their hash matches (also from another results folder of the same benchmark); when the
data files changed, the pairs are exported and evaluated again. A
benchmark subclass only declares its data, metrics and figures.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from ..datasets import get_dataset
from ..utils import fs
from ..utils.conf import as_plain, freeze, to_conf
from ..utils.errors import ConfigError, DataError
from ..utils.fingerprint import files_fingerprint
from ..utils.tensor import batch_to_device
from . import results as rio
from .base import BaseBenchmark
from .export import from_export, memoized_extractor, to_export
from .io import conf_diff
from .metrics import AUC_METRICS, summarize, threshold_name
from .sweep import (
    SWEEP_THRESHOLDS,
    PoolStarter,
    run_sweep,
    thresholds_from,
    workers_for,
)

logger = logging.getLogger(__name__)

#: config keys that do not change results: ignored by the tag, the guard and the hash
NON_RESULT_KEYS = (
    "data.num_workers",
    "data.prefetch_factor",
    "eval.workers",
    "eval.num_worst",
    "eval.progress",
)

# --------------------------------------------------------------------------------------


class EvalPipeline(BaseBenchmark):
    """Two-loop benchmark (export, then evaluate); subclasses declare data and metrics.

    Subclass API: ``default_conf`` (merged over this one), ``estimator_kind``,
    ``robust_key`` (the error summarised by AUC, e.g. ``H_error_ransac``),
    ``reported`` ([(our key, upstream key)] printed in the table), and the methods
    :meth:`pair_metrics`, :meth:`estimator_inputs`, :meth:`robust_metrics`,
    :meth:`make_figures` (and optionally :meth:`eval_data_conf`).
    """

    default_conf = {
        "data": {"name": None, "batch_size": 1, "num_workers": 0},
        "model": {"name": "two_view_pipeline", "ground_truth": {"name": None}},
        "eval": {
            "estimator": "poselib",
            "ransac_th": 1.0,  # float, list, or <= 0: sweep SWEEP_THRESHOLDS
            "workers": None,  # processes of the robust-estimation sweep (None: cores)
            "num_worst": 4,  # match figures of the worst pairs
            "progress": True,
        },
    }
    #: keys of ``eval`` not forwarded to the estimator
    pipeline_eval_keys = ("estimator", "ransac_th", "workers", "num_worst", "progress")
    estimator_kind = "homography"
    robust_key = "H_error_ransac"
    auc_metrics = AUC_METRICS
    reported: list[tuple[str, str]] = []
    name = "benchmark"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # set it explicitly: a module run as __main__
            cls.name = cls.__module__.rsplit(".", 1)[-1]

    def __init__(self, conf: Any = None):
        # keys of eval that are not the pipeline's are options of the estimator: they
        # are taken out, checked by building the estimator, then put back
        conf = OmegaConf.create(as_plain(to_conf(conf)))
        own = set(type(self).default_conf.get("eval", {})) | set(
            self.pipeline_eval_keys
        )
        extra = {}
        if conf.get("eval") is not None:
            extra = {k: conf.eval[k] for k in list(conf.eval) if k not in own}
            for k in extra:
                conf.eval.pop(k)
            extra = as_plain(OmegaConf.create(extra))
        super().__init__(conf)
        merged = OmegaConf.merge(OmegaConf.create(as_plain(self.conf)), {"eval": extra})
        self.conf = freeze(merged)
        self.thresholds = thresholds_from(self.conf.eval.ransac_th)
        self._check_estimator()
        self.timings: dict[str, float] = {}

    # ---- configuration ---------------------------------------------------------------

    def estimator_conf(self, th: float) -> dict:
        """Config of the robust estimator at threshold ``th`` (every extra eval key)."""
        ev = as_plain(self.conf.eval)
        opts = {k: v for k, v in ev.items() if k not in self.pipeline_eval_keys}
        return {"name": ev["estimator"], "ransac_th": float(th), **opts}

    def _check_estimator(self) -> None:
        from ..robust_estimators import load_estimator

        try:
            load_estimator(self.estimator_kind, self.estimator_conf(self.thresholds[0]))
        except ConfigError as e:
            raise ConfigError(f"eval (estimator options of {self.name}): {e}") from e

    def eval_data_conf(self) -> DictConfig:
        """Data config of the evaluation loop (default: the export's)."""
        return self.conf.data

    def saved_conf(self, checkpoint: str | None) -> dict:
        """The config written beside the results. With ``--checkpoint``, the sha256 of
        the file it resolves to: a retrained experiment of the same name is another
        model, whose predictions must not be taken from the cache."""
        conf = {**as_plain(self.conf), "checkpoint": checkpoint}
        if checkpoint:
            from ..experiments import checkpoint_file
            from ..weights.verify import sha256_of

            conf["checkpoint_sha256"] = sha256_of(checkpoint_file(checkpoint))[:16]
        return conf

    @staticmethod
    def export_part(conf: Mapping) -> dict:
        keys = ("data", "model", "checkpoint", "checkpoint_sha256")
        return {k: conf.get(k) for k in keys}

    def export_hash(self, checkpoint: str | None, data_files: str | None = None) -> str:
        """Hash of what the predictions depend on: data and model config, checkpoint
        and ``data_files`` (:meth:`data_fingerprint`)."""
        part = self.export_part(self.saved_conf(checkpoint))
        flat = {
            k: v
            for k, v in _flatten(part).items()
            if not any(k == i or k.startswith(i + ".") for i in NON_RESULT_KEYS)
        }
        if data_files is not None:
            flat["data_files"] = data_files
        return rio.config_hash(flat)

    @staticmethod
    def data_fingerprint(dataset) -> str | None:
        """Fingerprint of the files ``dataset`` reads (its ``source_files``): predictions
        made from other files (re-downloaded, edited, regenerated) are not reused."""
        source = dataset.source_files()
        return None if source is None else files_fingerprint(*source)

    # ---- benchmark hooks -------------------------------------------------------------

    # abstract, so that the registry never lists the pipeline itself as a benchmark

    @abstractmethod
    def pair_metrics(self, data: dict, pred: dict) -> dict[str, float]:
        """Estimator-free metrics of one pair (keypoints in the eval loader's pixels)."""

    @abstractmethod
    def estimator_inputs(self, data: dict, pred: dict) -> dict:
        """What the robust estimator of one pair needs (matches, cameras, GT)."""

    @staticmethod
    @abstractmethod
    def robust_metrics(inputs: dict, estimator) -> dict[str, float]:
        """Run ``estimator`` on ``inputs`` and return the pair's robust metrics."""

    def make_figures(self, out_dir: Path, results: dict, **kw) -> list[Path]:
        return []

    # ---- run -------------------------------------------------------------------------

    def run(
        self,
        output_dir: Path,
        overwrite: bool = False,
        overwrite_eval: bool = False,
        model: nn.Module | None = None,
        checkpoint: str | None = None,
    ) -> dict[str, float]:
        """Export (if needed), evaluate (if needed) and write everything to ``output_dir``.

        ``model``: an already built model (e.g. during training); otherwise it is built
        from ``conf.model`` (or loaded from ``checkpoint``) only when predictions are
        missing. Returns the summaries.
        """
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        fs.remove_stale_temporaries(out)
        conf_path = out / "conf.yaml"
        pred_path, res_path, sum_path = (
            out / "predictions.h5",
            out / "results.h5",
            out / "summaries.json",
        )
        saved = self.saved_conf(checkpoint)
        reevaluate = overwrite or overwrite_eval
        if conf_path.exists() and (pred_path.exists() or res_path.exists()):
            old = as_plain(OmegaConf.load(conf_path))
            changed = conf_diff(
                self.export_part(old), self.export_part(saved), NON_RESULT_KEYS
            )
            if changed and not overwrite:
                raise ConfigError(
                    f"{out} holds results of another data/model config (changed: "
                    f"{', '.join(changed[:6])}). Pass --overwrite to replace them, or "
                    "--tag NAME to write elsewhere."
                )
            changed_eval = conf_diff(
                {"eval": old.get("eval")}, {"eval": saved["eval"]}, NON_RESULT_KEYS
            )
            if changed_eval and not reevaluate:
                raise ConfigError(
                    f"{out} holds results of another evaluation config (changed: "
                    f"{', '.join(changed_eval[:6])}). Pass --overwrite_eval to "
                    "re-evaluate from the cached predictions, or --tag NAME."
                )
        if overwrite:
            for p in (pred_path, res_path, sum_path):
                p.unlink(missing_ok=True)
        if reevaluate:
            for p in (res_path, sum_path):
                p.unlink(missing_ok=True)
        with fs.atomic_path(conf_path, ".yaml") as tmp:
            OmegaConf.save(OmegaConf.create(saved), tmp)

        dataset = get_dataset(self.conf.data.name)(
            self.conf.data
        )  # missing data: first
        ehash = self.export_hash(checkpoint, self.data_fingerprint(dataset))
        self.timings = {}
        if not rio.predictions_valid(pred_path, ehash):
            if rio.export_hash_of(pred_path) is not None:
                logger.info(
                    "%s was made from other data files (or another model): "
                    "exporting again.",
                    pred_path,
                )
            # --overwrite means "run the network again": never reuse another export
            if overwrite or not self._link_cached_predictions(out, ehash):
                self.export(pred_path, ehash, dataset, model, checkpoint)
            for p in (res_path, sum_path):  # they were computed from other predictions
                p.unlink(missing_ok=True)
        else:
            logger.info("Using the cached predictions %s.", pred_path)
        if res_path.exists() and sum_path.exists():
            logger.info(
                "Using the cached results %s (--overwrite_eval recomputes).", res_path
            )
            return rio.read_json(sum_path)
        summaries = self.evaluate(out, pred_path)
        return summaries

    def _link_cached_predictions(self, out: Path, ehash: str) -> bool:
        """Reuse a complete export of the same config from a sibling results folder."""
        pred_path = out / "predictions.h5"
        for other in sorted(out.parent.glob("*/predictions.h5")):
            if other.parent == out or rio.export_hash_of(other) != ehash:
                continue
            with fs.atomic_path(pred_path, ".h5") as tmp:
                tmp.unlink()
                try:
                    os.link(other, tmp)
                except OSError:
                    shutil.copyfile(other, tmp)
            logger.info("Reusing the predictions of %s (same data and model).", other)
            return True
        return False

    # ---- loop 1: export --------------------------------------------------------------

    def build_model(self, checkpoint: str | None) -> nn.Module:
        if checkpoint:
            from .io import _experiments_module

            return _experiments_module().load_experiment(
                checkpoint, conf=self.conf.model
            )
        from ..models import get_model

        if self.conf.model.get("name") is None:
            raise ConfigError(
                "model.name is not set: pass --conf NAME or --checkpoint."
            )
        return get_model(self.conf.model.name)(self.conf.model)

    def export(
        self,
        pred_path: Path,
        ehash: str,
        dataset,
        model: nn.Module | None = None,
        checkpoint: str | None = None,
    ) -> None:
        """Run the model on every pair of ``dataset`` (built from ``conf.data``); write
        ``predictions.h5`` (original pixels)."""
        t0 = time.perf_counter()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        loader = dataset.get_data_loader("test", shuffle=False)
        if model is None:
            model = self.build_model(checkpoint)
        model = model.to(device).eval()
        model_s = 0.0
        with (
            torch.inference_mode(),
            memoized_extractor(model) as memo,
            rio.PredictionWriter(pred_path, ehash) as writer,
        ):
            for data in tqdm(
                loader, desc=f"{self.name}: export", disable=not self.conf.eval.progress
            ):
                if len(data["name"]) != 1:
                    raise ConfigError(f"{self.name} needs data.batch_size=1.")
                data = batch_to_device(data, device)
                if device == "cuda":
                    torch.cuda.synchronize()
                ts = time.perf_counter()
                pred = model(data)
                if device == "cuda":
                    torch.cuda.synchronize()
                model_s += time.perf_counter() - ts
                writer.write(data["name"][0], self.to_export(data, pred))
        n_pairs = len(loader)
        self.timings.update(
            export_s=time.perf_counter() - t0,
            model_s=model_s,
            pairs=n_pairs,
            extractions=(memo.calls - memo.hits) if memo else 2 * n_pairs,
        )
        if memo:
            logger.info(
                "Exported %d pairs: %d distinct images extracted (%d reused).",
                n_pairs,
                memo.calls - memo.hits,
                memo.hits,
            )

    to_export = staticmethod(to_export)
    from_export = staticmethod(from_export)

    # ---- loop 2: evaluate ------------------------------------------------------------

    def _pair_loop(self, loader, pred_path: Path) -> tuple:
        """Estimator-free metrics and estimator inputs of every pair."""
        t0 = time.perf_counter()
        per_pair: dict[str, list[float]] = {}
        names, scenes, inputs = [], [], []
        with rio.PredictionReader(pred_path) as reader:
            for data in tqdm(
                loader,
                desc=f"{self.name}: evaluate",
                disable=not self.conf.eval.progress,
            ):
                name = data["name"][0]
                if name not in reader:
                    raise DataError(
                        f"{pred_path} has no predictions for pair {name!r} (the dataset "
                        "changed?): rerun with --overwrite."
                    )
                pred = self.from_export(data, reader.read(name))
                for k, v in self.pair_metrics(data, pred).items():
                    per_pair.setdefault(k, []).append(float(v))
                inputs.append(self.estimator_inputs(data, pred))
                names.append(name)
                scenes.append(str(data["scene"][0]) if "scene" in data else "")
        return time.perf_counter() - t0, per_pair, names, scenes, inputs

    def evaluate(self, out: Path, pred_path: Path) -> dict[str, float]:
        t0 = time.perf_counter()
        data_conf = self.eval_data_conf()
        dataset = get_dataset(data_conf.name)(data_conf)
        loader = dataset.get_data_loader("test", shuffle=False)
        pairs = loader.dataset
        nworkers = workers_for(
            len(loader), len(self.thresholds), self.conf.eval.workers
        )
        pool = PoolStarter(nworkers) if nworkers > 1 else None  # starts meanwhile
        try:
            metrics_s, per_pair, names, scenes, inputs = self._pair_loop(
                loader, pred_path
            )
            sweep, sweep_s, workers = run_sweep(
                self.estimator_kind,
                self.estimator_conf,
                self.thresholds,
                inputs,
                type(self).robust_metrics,
                workers=self.conf.eval.workers,
                progress=self.conf.eval.progress,
                pool=pool,
            )
        finally:
            if pool is not None:
                pool.close()
        sweep_results = {th: _columns(rows) for th, rows in sweep.items()}
        sweep_summaries = {
            th: summarize(res, self.auc_metrics, round=4)
            for th, res in sweep_results.items()
        }
        mkey = f"{self.robust_key}_mAA"
        best = max(self.thresholds, key=lambda th: (sweep_summaries[th][mkey], -th))
        per_pair.update(sweep_results[best])
        summaries = summarize(per_pair, self.auc_metrics, round=4)
        summaries["ransac_th"] = best
        summaries.update(self.upstream_aliases(summaries))
        self.timings.update(metrics_s=metrics_s, sweep_s=sweep_s, sweep_workers=workers)
        if len(self.thresholds) > 1:
            print(self.sweep_table(sweep_summaries, best, sweep_s, workers))
        results = {**per_pair, "names": names, "scenes": scenes}
        rio.write_results(
            out / "results.h5",
            per_pair,
            names,
            scenes,
            summaries,
            sweep={threshold_name(th): r for th, r in sweep_results.items()},
        )
        rio.write_json(
            out / "sweep.json",
            {
                f"{k}@th={threshold_name(th)}": v
                for th, s in sweep_summaries.items()
                for k, v in s.items()
                if k.startswith(self.robust_key)
            },
        )
        figures = self.make_figures(out, results, dataset=pairs, pred_path=pred_path)
        rio.write_json(out / "summaries.json", summaries)
        self.timings["eval_s"] = time.perf_counter() - t0
        rio.write_json(out / "timings.json", self.timings)
        logger.info("Wrote %s and %d figure(s).", out, len(figures))
        return summaries

    # ---- output ----------------------------------------------------------------------

    def upstream_aliases(self, summaries: Mapping[str, float]) -> dict[str, float]:
        return {
            up: summaries[ours]
            for ours, up in self.reported
            if ours in summaries and up != ours
        }

    def sweep_table(
        self, sweep: Mapping[float, Mapping], best: float, secs: float, workers: int
    ) -> str:
        keys = [
            k for k in next(iter(sweep.values())) if k.startswith(self.robust_key + "@")
        ]
        keys.append(f"{self.robust_key}_mAA")
        head = ["ransac_th", *keys]
        rows = [
            [
                f"{th:g}{' *' if th == best else ''}",
                *(f"{sweep[th][k]:.4f}" for k in keys),
            ]
            for th in sweep
        ]
        txt = format_table(head, rows)
        return (
            f"\nThreshold sweep ({self.conf.eval.estimator}, {len(sweep)} thresholds, "
            f"{workers} worker(s), {secs:.1f} s); * = best by mAA:\n{txt}"
        )

    def summary_table(self, summaries: Mapping[str, float]) -> str:
        rows = [
            [ours, _fmt(summaries.get(ours)), up]
            for ours, up in self.reported
            if ours in summaries
        ]
        return format_table(["metric", "value", "upstream key"], rows)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def format_table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def _columns(rows: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            out.setdefault(k, []).append(float(v))
    return out


def _flatten(conf: Any, prefix: str = "") -> dict[str, Any]:
    from .io import flatten

    return flatten(conf, prefix)


__all__ = ["EvalPipeline", "SWEEP_THRESHOLDS", "memoized_extractor", "format_table"]
