"""HPatches homography benchmark (protocol of glue-factory, ``docs/evaluation.md``).

    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official
    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official \\
        eval.estimator=opencv eval.ransac_th=-1

108 sequences (the eight large-image ones ignored), pairs 1->2..6 (540), images resized
so that the SHORT side is 480 px (GT ``H' = S1 H S0^-1`` in the dataset, in the library's
+0.5 pixel convention), configs extract 1024 keypoints. Per pair: ``prec@1px``,
``prec@3px`` (symmetric transfer error), ``num_matches``, ``num_keypoints``, the mean
corner error (corners (0,0), (W,0), (W,H), (0,H) of the 480 px image) of the
score-weighted DLT (``H_error_dlt``) and of the robust estimator (``H_error_ransac``) with
its inliers; with ``eval.gt_matches=true`` also ``match_prec`` and ``match_rec``
against the homography's labels of all keypoints
(``matchers.homography_matcher``, 3 px: the training's validation metrics).
Summaries: medians (and means, with standard errors) of the per-pair metrics, AUC at
1/3/5 px (rounded to 4 decimals, failures as inf) and their mean (mAA, which picks the
best threshold of a sweep).

With lines (a model that outputs ``lines0/1`` and ``line_matches0/1``, e.g.
``aliked+lsd+NN``): ``num_lines``, ``num_line_matches``, ``line_prec`` and ``line_rec``
against the homography's line ground truth (``matchers.homography_matcher`` with
``use_lines``); with ``eval.estimator=point_line`` the matched segments go to the
estimator, ``H_error_ransac`` is from points and lines and ``H_error_ransac_points``
from the points alone (same estimator, same threshold).
"""

from __future__ import annotations

from pathlib import Path

from .cli import make_main
from .figures import recall_and_worst_figures
from .metrics import (
    HPATCHES_AUC_THRESHOLDS,
    homography_dlt_metrics,
    homography_match_errors,
    homography_match_metrics,
    homography_robust_metrics,
    labelled_match_metrics,
    line_match_metrics,
)
from .pipeline import PIPELINE_EVAL_KEYS, EvalPipeline
from .stages import EvalResults


def _hpatches_reported() -> list[tuple[str, str]]:
    rows = [
        ("median_prec@1px", "mprec@1px"),
        ("median_prec@3px", "mprec@3px"),
        ("median_num_matches", "mnum_matches"),
        ("median_num_keypoints", "mnum_keypoints"),
    ]
    for key in ("H_error_dlt", "H_error_ransac"):
        rows += [(f"{key}@{t}px", f"{key}@{t}px") for t in HPATCHES_AUC_THRESHOLDS]
        rows.append((f"{key}_mAA", f"{key}_mAA"))
    rows += [
        ("median_ransac_inl", "mransac_inl"),
        ("median_ransac_inl%", "mransac_inl%"),
        ("ransac_th", "ransac_th"),
    ]
    return rows


def _hpatches_line_rows() -> list[tuple[str, str]]:
    """Rows of models with lines (and of the point+line estimator)."""
    key = "H_error_ransac_points"
    rows = [(f"{key}@{t}px", f"{key}@{t}px") for t in HPATCHES_AUC_THRESHOLDS]
    rows.append((f"{key}_mAA", f"{key}_mAA"))
    rows.append(("median_ransac_line_inl", "median_ransac_line_inl"))
    keys = ("num_lines", "num_line_matches", "line_prec", "line_rec")
    return rows + [(f"median_{k}", f"median_{k}") for k in keys]


class HomographyBenchmark(EvalPipeline):
    """The homography metrics of HPatches on any dataset with ``H_0to1`` (abstract:
    the benchmarks declare their data)."""

    default_conf = {
        # match_prec / match_rec against the labels of all keypoints: the ground-truth
        # matcher on every pair (about 0.1 s at 1024 keypoints on a CPU)
        "eval": {"gt_matches": False},
    }
    pipeline_eval_keys = (*PIPELINE_EVAL_KEYS, "gt_matches")
    estimator_kind = "homography"
    robust_key = "H_error_ransac"
    reported = _hpatches_reported()
    optional_reported = _hpatches_line_rows()
    correct_th = 3.0  # px, colour of the matches in the figures
    line_gt_matcher = "matchers.homography_matcher"
    point_gt_matcher = "matchers.homography_matcher"
    title = "homography"

    match_errors = staticmethod(homography_match_errors)
    robust_metrics = staticmethod(homography_robust_metrics)

    def pair_metrics(self, record, data, pred):
        return {
            **homography_match_metrics(record),
            **homography_dlt_metrics(record),
            **self.labelled_metrics(record),
            **line_match_metrics(record),
        }

    @staticmethod
    def labelled_metrics(record) -> dict[str, float]:
        if record.gt_matches0 is None:
            return {}
        out = labelled_match_metrics(record)
        return {k: out[k] for k in ("match_prec", "match_rec")}

    def point_ground_truth(self, data: dict, pred: dict):
        return (
            super().point_ground_truth(data, pred)
            if self.conf.eval.gt_matches
            else None
        )

    def make_figures(self, out: Path, results: EvalResults) -> list[Path]:
        errs = {
            "RANSAC": results.per_pair["H_error_ransac"],
            "DLT": results.per_pair["H_error_dlt"],
        }
        if "H_error_ransac_points" in results.per_pair:
            errs = {
                "RANSAC points+lines": errs["RANSAC"],
                "RANSAC points": results.per_pair["H_error_ransac_points"],
                "DLT": errs["DLT"],
            }
        title = f"{self.title} ({self.conf.eval.estimator})"
        panel = (errs, HPATCHES_AUC_THRESHOLDS, title, "mean corner error [px]")
        return recall_and_worst_figures(
            self, out, "homography_recall.png", panel, results, "H_error_ransac"
        )


class HPatchesPipeline(HomographyBenchmark):
    default_conf = {
        "data": {
            "name": "hpatches",
            "preprocessing": {"resize": 480, "side": "short"},
        },
        "eval": {"estimator": "poselib", "ransac_th": 1.0},
    }
    name = "hpatches"
    title = "HPatches homography"


__main_benchmark__ = HPatchesPipeline  # HomographyBenchmark is the shared part
main = make_main(HPatchesPipeline)

if __name__ == "__main__":
    main()
