"""The declaration every benchmark fills in, run by the stages of :mod:`.stages`.

A benchmark module is a small subclass of :class:`EvalPipeline` (see ``hpatches.py``):

* ``default_conf``: its ``data`` (and ``eval`` defaults), merged over this class's;
* ``estimator_kind`` (``homography`` or ``relative_pose``: which robust estimators
  ``eval.estimator`` names, looked up in the estimator registry), ``robust_key`` (the
  error whose mAA picks the best threshold), ``reported`` (the summary table);
* ``match_errors(record)``: the per-match error of its correctness rule (computed once
  per pair) and ``correct_th`` (the figures' green / red); ``optional_reported``: rows
  of the table present only with some models or estimators (the line metrics);
* ``pair_metrics(record, data, pred)``: estimator-free metrics of one pair;
* ``robust_metrics(record, estimator)``: a module-level function run in the worker
  processes on the :class:`~gluefactory.eval.records.PairRecord` as it is;
* ``make_figures(out, results)`` and optionally ``eval_data_conf()``;
* ``gt_matcher``: the ground-truth matcher that labels lines (run with ``use_lines:
  true`` when the model outputs lines) and, where a benchmark asks, keypoints
  (:meth:`EvalPipeline.ground_truth`).

The config is checked once, when the benchmark is built (:meth:`EvalPipeline.check_conf`,
the hook of :class:`~gluefactory.utils.conf.Configurable`): ``eval`` holds the pipeline's
keys (:data:`PIPELINE_EVAL_KEYS`) and the options of the estimator ``eval.estimator``
(upstream's ``eval.estimator=poselib eval.ransac_th=-1`` forms).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from omegaconf import DictConfig
from torch import nn

from ..utils.conf import as_plain, merge_strict
from ..utils.errors import ConfigError
from ..utils.tensor import unbatch
from . import stages
from .base import BaseBenchmark
from .export import from_export, memoized_extractor, to_export
from .metrics import AUC_METRICS
from .provenance import NON_RESULT_KEYS
from .records import PairRecord, has_lines
from .sweep import SWEEP_THRESHOLDS, thresholds_from
from .tables import summary_table

#: keys of ``eval`` that are the pipeline's; every other key is an estimator option
PIPELINE_EVAL_KEYS = ("estimator", "ransac_th", "workers", "num_worst", "progress")


class EvalPipeline(BaseBenchmark):
    """Two-stage benchmark (export, then evaluate); subclasses declare data and metrics
    (module doc)."""

    default_conf = {
        "data": {"name": None, "batch_size": 1, "num_workers": 0},
        "model": {"name": "two_view_pipeline", "ground_truth": {"name": None}},
        "eval": {
            "estimator": "poselib",  # a name of the estimator registry of estimator_kind
            "ransac_th": 1.0,  # float, list, or <= 0: sweep SWEEP_THRESHOLDS
            "workers": None,  # processes of the robust-estimation sweep (None: cores)
            "num_worst": 4,  # match figures of the worst pairs
            "progress": True,
        },
    }
    # eval: the pipeline's keys and the estimator's options, checked in check_conf
    open_conf_keys = ("eval",)
    pipeline_eval_keys = PIPELINE_EVAL_KEYS
    estimator_kind: ClassVar[str] = "homography"
    robust_key: ClassVar[str] = "H_error_ransac"
    auc_metrics = AUC_METRICS
    reported: ClassVar[list[tuple[str, str]]] = []
    #: rows of the summary table present only with some models or estimators (lines)
    optional_reported: ClassVar[list[tuple[str, str]]] = []
    correct_th: ClassVar[float] = 3.0
    #: ground-truth matcher of lines and points (``matchers.homography_matcher``, ...)
    gt_matcher: ClassVar[str | None] = None
    name = "benchmark"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # set it explicitly: a module run as __main__
            cls.name = cls.__module__.rsplit(".", 1)[-1]

    def __init__(self, conf: Any = None):
        super().__init__(conf)
        self.thresholds = thresholds_from(self.conf.eval.ransac_th)
        self.timings: dict[str, float] = {}
        self._gt: dict[bool, nn.Module] = {}  # lines? -> matcher, built when first used

    # ---- configuration ---------------------------------------------------------------

    @classmethod
    def check_conf(cls, conf: DictConfig) -> None:
        """``eval``: the pipeline's keys plus the options of ``eval.estimator`` (found
        in the estimator registry of ``estimator_kind``, so a new estimator needs no
        change here), checked by the estimator's own config (no estimator is built)."""
        from ..robust_estimators import get_estimator

        ev = as_plain(conf.eval)
        ths = thresholds_from(ev["ransac_th"])
        est = get_estimator(cls.estimator_kind, ev["estimator"])
        known = {**as_plain(est.defaults()), **as_plain(cls.defaults().eval)}
        known.pop("name")  # eval.estimator names it
        merge_strict(known, ev, f"{cls.__name__} eval (estimator {est.__name__})")
        try:
            est.build_conf(cls.estimator_options(ev, ths[0]))
        except ConfigError as e:
            raise ConfigError(f"eval (estimator options of {cls.name}): {e}") from e

    @classmethod
    def estimator_options(cls, ev: Mapping, th: float) -> dict:
        opts = {k: v for k, v in ev.items() if k not in cls.pipeline_eval_keys}
        return {"name": ev["estimator"], "ransac_th": float(th), **opts}

    def estimator_conf(self, th: float) -> dict:
        """Config of the robust estimator at threshold ``th`` (every extra eval key)."""
        return self.estimator_options(as_plain(self.conf.eval), th)

    def eval_data_conf(self) -> DictConfig:
        """Data config of the evaluation loop (default: the export's)."""
        return self.conf.data

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

    to_export = staticmethod(to_export)
    from_export = staticmethod(from_export)

    # ---- the declaration (abstract: the registry never lists this class) -------------

    match_errors: ClassVar[Callable[[PairRecord], torch.Tensor]]
    robust_metrics: ClassVar[Callable[[PairRecord, Any], dict[str, float]]]

    @abstractmethod
    def pair_metrics(
        self, record: PairRecord, data: dict, pred: dict
    ) -> dict[str, float]:
        """Estimator-free metrics of one pair (``data``, ``pred``: the loader's sample
        and the predictions in its pixels, for what the record does not hold)."""

    def make_figures(self, out: Path, results: stages.EvalResults) -> list[Path]:
        return []

    def ground_truth(
        self, data: dict, pred: dict, lines: bool = False
    ) -> torch.Tensor | None:
        """Labels of one pair from the benchmark's ground-truth matcher (-1 unmatched,
        -2 ignored), on the predictions in the loader's pixels: (N0,) ``gt_matches0``
        of the keypoints, or with ``lines`` (L0,) ``gt_line_matches0`` of the lines the
        model matched (``lines0/1``, ``line_mask0/1``). None without a ground-truth
        matcher, or for lines when the model outputs none."""
        if self.gt_matcher is None or (lines and not has_lines(pred)):
            return None
        if lines not in self._gt:
            from ..models import get_model

            conf = {"use_points": not lines, "use_lines": lines}
            self._gt[lines] = get_model(self.gt_matcher)(conf).eval()
        keys = ("lines0", "lines1", "line_mask0", "line_mask1")
        key = "gt_line_matches0" if lines else "gt_matches0"
        keys = keys if lines else ("keypoints0", "keypoints1")
        inputs = {**data, **{k: pred[k][None] for k in keys if k in pred}}
        with torch.inference_mode():
            gt = self._gt[lines](inputs)[key]
        return unbatch(gt, 1, key).detach().cpu().long()

    # ---- run -------------------------------------------------------------------------

    def run(
        self,
        output_dir: Path,
        overwrite: bool = False,
        overwrite_eval: bool = False,
        model: nn.Module | None = None,
        checkpoint: str | None = None,
    ) -> dict[str, float]:
        """:func:`gluefactory.eval.stages.run` of this benchmark: export if needed,
        evaluate if needed, write everything to ``output_dir``; the summaries."""
        return stages.run(
            self,
            output_dir,
            overwrite=overwrite,
            overwrite_eval=overwrite_eval,
            model=model,
            checkpoint=checkpoint,
        )

    # ---- output ----------------------------------------------------------------------

    def upstream_aliases(self, summaries: Mapping[str, float]) -> dict[str, float]:
        return {
            up: summaries[ours]
            for ours, up in [*self.reported, *self.optional_reported]
            if ours in summaries and up != ours
        }

    def summary_table(self, summaries: Mapping[str, float]) -> str:
        return summary_table([*self.reported, *self.optional_reported], summaries)


__all__ = [
    "EvalPipeline",
    "NON_RESULT_KEYS",
    "PIPELINE_EVAL_KEYS",
    "SWEEP_THRESHOLDS",
    "memoized_extractor",
]
