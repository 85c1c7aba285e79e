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
* ``line_gt_matcher``: the ground-truth matcher that labels lines (run with
  ``use_lines: true`` when the model outputs lines, :meth:`EvalPipeline.line_ground_truth`);
  ``point_gt_matcher``: the one that labels every keypoint (``gt_matches0`` of the
  record, :meth:`EvalPipeline.point_ground_truth`); ``gt_matcher_conf``: their options;
* ``dataset_summaries(results)``: summaries over all pairs at once (ETH3D's AP);
* ``estimator_kind = None``: a benchmark without robust estimation (no ``eval.estimator``
  options, no threshold sweep).

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

from ..utils.cli import conf_section
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


def check_component_conf(section: str, conf: DictConfig) -> None:
    """Check the ``model`` or ``data`` section by the ``build_conf`` of the class its
    ``name`` picks (nothing built); a section without a name is left to its user
    (a model passed in, or ``model.name is not set`` when one is built)."""
    from ..datasets import get_dataset
    from ..models import get_model

    if conf.get("name") is None:
        return
    get = get_model if section == "model" else get_dataset
    with conf_section(section):
        get(conf.name).build_conf(conf)


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
    estimator_kind: ClassVar[str | None] = "homography"
    robust_key: ClassVar[str] = "H_error_ransac"
    auc_metrics = AUC_METRICS
    reported: ClassVar[list[tuple[str, str]]] = []
    #: rows of the summary table present only with some models or estimators (lines)
    optional_reported: ClassVar[list[tuple[str, str]]] = []
    correct_th: ClassVar[float] = 3.0
    #: matcher of the line ground truth (``matchers.homography_matcher``, ...) or None
    line_gt_matcher: ClassVar[str | None] = None
    #: matcher of the point ground truth of every keypoint, or None
    point_gt_matcher: ClassVar[str | None] = None
    #: options of the ground-truth matchers (thresholds)
    gt_matcher_conf: ClassVar[dict[str, Any]] = {}
    name = "benchmark"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:  # set it explicitly: a module run as __main__
            cls.name = cls.__module__.rsplit(".", 1)[-1]

    def __init__(self, conf: Any = None):
        super().__init__(conf)
        check_component_conf("data", self.eval_data_conf())  # the evaluation loop's
        self.thresholds = (
            thresholds_from(self.conf.eval.ransac_th) if self.estimator_kind else []
        )
        self.timings: dict[str, float] = {}
        self._gt_models: dict[tuple[str, str], nn.Module] = {}  # built on first use

    # ---- configuration ---------------------------------------------------------------

    @classmethod
    def check_conf(cls, conf: DictConfig) -> None:
        """The whole config, nothing built (no weights, no data, no estimator), in
        this order: ``model`` (by the model's ``build_conf``: a typo fails before any
        download), ``data`` (by the dataset's, e.g. ``num_workers >= 0``), then
        ``eval``: the pipeline's keys plus the options of ``eval.estimator`` (found
        in the estimator registry of ``estimator_kind``, so a new estimator needs no
        change here), checked by the estimator's own config."""
        from ..robust_estimators import get_estimator

        check_component_conf("model", conf.model)
        check_component_conf("data", conf.data)
        ev = as_plain(conf.eval)
        if cls.estimator_kind is None:
            merge_strict(as_plain(cls.defaults().eval), ev, f"{cls.__name__} eval")
            return
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

    def line_ground_truth(self, data: dict, pred: dict) -> torch.Tensor | None:
        """(L0,) ``gt_line_matches0`` of one pair (-1 unmatched, -2 ignored) from the
        benchmark's ground-truth matcher with ``use_lines: true``, on the lines the
        model matched (``lines0/1``, ``line_mask0/1``) in the loader's pixels; None
        when the model outputs no lines or the benchmark has no line ground truth."""
        if self.line_gt_matcher is None or not has_lines(pred):
            return None
        keys = ("lines0", "lines1", "line_mask0", "line_mask1")
        return self._ground_truth(self.line_gt_matcher, "lines", data, pred, keys)

    def point_ground_truth(self, data: dict, pred: dict) -> torch.Tensor | None:
        """(N0,) ``gt_matches0`` of every keypoint of image 0 (-1 unmatched, -2
        ignored) from ``point_gt_matcher``, in the loader's pixels; None when the
        benchmark has no point ground truth."""
        if self.point_gt_matcher is None:
            return None
        keys = ("keypoints0", "keypoints1", "keypoint_mask0", "keypoint_mask1")
        return self._ground_truth(self.point_gt_matcher, "points", data, pred, keys)

    def _ground_truth(
        self, matcher: str, what: str, data: dict, pred: dict, keys: tuple[str, ...]
    ) -> torch.Tensor:
        """``gt_matches0`` (points) or ``gt_line_matches0`` (lines) of one pair from
        ``matcher`` run on ``keys`` of the predictions (a model built once)."""
        model = self._gt_models.get((matcher, what))
        if model is None:
            from ..models import get_model

            use = {"use_points": what == "points", "use_lines": what == "lines"}
            model = get_model(matcher)({**self.gt_matcher_conf, **use}).eval()
            self._gt_models[(matcher, what)] = model
        inputs = {**data, **{k: pred[k][None] for k in keys if k in pred}}
        out = "gt_matches0" if what == "points" else "gt_line_matches0"
        with torch.inference_mode():
            gt = model(inputs)[out]
        return unbatch(gt, 1, out).detach().cpu().long()

    def dataset_summaries(self, results: stages.EvalResults) -> dict[str, float]:
        """Summaries computed over all pairs at once (default: none)."""
        return {}

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
