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
its inliers. Summaries: medians of the per-match metrics and inliers, AUC at 1/3/5 px
(rounded to 4 decimals, failures as inf) and their mean (mAA, which picks the best
threshold of a sweep).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..geometry.homography import sym_homography_error
from .cli import make_main
from .figures import recall_and_worst_figures
from .metrics import (
    HPATCHES_AUC_THRESHOLDS,
    eval_homography_dlt,
    eval_homography_robust,
    eval_matches_homography,
    image_size,
    matched_keypoints,
)
from .pipeline import EvalPipeline


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


def homography_robust_metrics(inputs: dict, estimator) -> dict[str, float]:
    """Robust-estimation metrics of one pair (runs in a worker process)."""
    n = len(inputs["m_kpts0"])
    data = {"H_0to1": inputs["H_0to1"], "view0": {"image_size": inputs["image_size"]}}
    pred = {
        "keypoints0": inputs["m_kpts0"],
        "keypoints1": inputs["m_kpts1"],
        "matches0": torch.arange(n),
    }
    return eval_homography_robust(data, pred, estimator)


class HPatchesPipeline(EvalPipeline):
    default_conf = {
        "data": {
            "name": "hpatches",
            "preprocessing": {"resize": 480, "side": "short"},
        },
        "eval": {"estimator": "poselib", "ransac_th": 1.0},
    }
    name = "hpatches"
    estimator_kind = "homography"
    robust_key = "H_error_ransac"
    reported = _hpatches_reported()
    correct_th = 3.0  # px, colour of the matches in the figures

    def pair_metrics(self, data, pred):
        return {
            **eval_matches_homography(data, pred),
            **eval_homography_dlt(data, pred),
        }

    def estimator_inputs(self, data, pred):
        k0, k1, _ = matched_keypoints(pred)
        return {
            "m_kpts0": k0.double(),
            "m_kpts1": k1.double(),
            "H_0to1": data["H_0to1"][0].double().cpu(),
            "image_size": torch.tensor(image_size(data["view0"]), dtype=torch.float64),
        }

    robust_metrics = staticmethod(homography_robust_metrics)

    def correct(self, data, pred) -> np.ndarray:
        k0, k1, _ = matched_keypoints(pred)
        err = sym_homography_error(k0.double(), k1.double(), data["H_0to1"][0].double())
        return (err < self.correct_th).numpy()

    def make_figures(self, out: Path, results: dict, dataset=None, pred_path=None):
        errs = {
            "RANSAC": results["H_error_ransac"],
            "DLT": results["H_error_dlt"],
        }
        title = f"HPatches homography ({self.conf.eval.estimator})"
        panel = (errs, HPATCHES_AUC_THRESHOLDS, title, "mean corner error [px]")
        return recall_and_worst_figures(
            self,
            out,
            "homography_recall.png",
            panel,
            results,
            "H_error_ransac",
            dataset,
            pred_path,
        )


main = make_main(HPatchesPipeline)

if __name__ == "__main__":
    main()
