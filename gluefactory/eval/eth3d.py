"""ETH3D point and line matching benchmark (protocol of glue-factory and SOLD2).

    python -m gluefactory.eval.eth3d --conf superpoint+lsd+gluestick
    python -m gluefactory.eval.eth3d --conf xfeat+lsd+NN \\
        data.root=builtin/eth3d data.downsize_factor=1

The 13 scenes of ``ETH3D_undistorted`` (the ``eth3d`` dataset): every pair of views
sharing at least 500 3D points, images downsized by 8 (756 x 504), depth maps at that
resolution. Features are extracted and evaluated at that resolution. The ground truth
labels every keypoint of image 0 from the depth maps, poses and cameras
(``matchers.depth_matcher``: a true match within 3 px, unmatched beyond 5 px, -2
ignored in between or without depth; no epipolar negatives, as upstream's defaults) and,
for a model with lines, every line of image 0 (GlueStick's line rule on the depth).

Metrics: ``AP`` (and ``AP_lines``): the average precision, in %, of the matches of
all pairs pooled and sorted by matching score, against the ground truth, ignoring the
features whose ground truth is -2 (:func:`gluefactory.eval.metrics.average_precision`);
per pair ``match_prec`` / ``match_rec`` (precision and recall of the matches),
``num_matches``, ``num_keypoints`` and with lines ``line_prec``, ``line_rec``,
``num_lines``, ``num_line_matches`` (means in the table). Figure: ``pr_curve.png``.
No robust estimation. Upstream's line evaluation crashed (an unexpected ``conf=``
argument); here lines are evaluated whenever the model outputs them (``eval.eval_lines``
turns that off).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .cli import make_main
from .figures import pr_curve_figure
from .metrics import average_precision, labelled_match_metrics, line_match_metrics
from .pipeline import EvalPipeline
from .records import PairRecord
from .stages import EvalResults

#: the table: (our key, upstream key)
REPORTED = [
    ("AP", "AP"),
    ("mean_match_prec", "mean_match_prec"),
    ("mean_match_rec", "mean_match_rec"),
    ("mean_num_matches", "mnum_matches"),
    ("mean_num_keypoints", "mnum_keypoints"),
]
LINE_ROWS = [("AP_lines", "AP_lines")] + [
    (f"mean_{k}", f"mean_{k}")
    for k in ("line_prec", "line_rec", "num_lines", "num_line_matches")
]


def label_errors(rec: PairRecord) -> torch.Tensor:
    """(M,) 0 for a correct match, 1 for a wrong one, NaN where the ground truth
    ignores its keypoint (the colour rule of the figures, ``correct_th`` 0.5)."""
    labels = rec.labels()
    if labels is None:
        return torch.full((rec.num_matches,), float("nan"), dtype=torch.float64)
    err = torch.from_numpy(1.0 - labels.astype(np.float64))
    err[torch.from_numpy(labels < 0)] = float("nan")
    return err


def pooled_ap(
    records: list[PairRecord], lines: bool = False
) -> tuple[float, np.ndarray, np.ndarray] | None:
    """:func:`average_precision` of the point (or line) matches of all ``records``;
    None when no record has that ground truth."""
    labels, scores, positives = [], [], 0
    for rec in records:
        gt = rec.gt_line_matches0 if lines else rec.gt_matches0
        lab = rec.line_labels() if lines else rec.labels()
        if gt is None or lab is None:
            continue
        labels.append(lab)
        scores.append((rec.line_scores if lines else rec.scores).numpy())
        positives += int((gt >= 0).sum())
    if not labels:
        return None
    return average_precision(np.concatenate(labels), np.concatenate(scores), positives)


class ETH3DPipeline(EvalPipeline):
    default_conf = {
        "data": {
            "name": "eth3d",
            "root": "ETH3D_undistorted",
            "downsize_factor": 8,
            "min_covisibility": 500,
        },
        "eval": {"estimator": None, "ransac_th": None, "eval_lines": True},
    }
    name = "eth3d"
    estimator_kind = None  # no robust estimation
    reported = REPORTED
    optional_reported = LINE_ROWS
    correct_th = 0.5  # on label_errors
    point_gt_matcher = "matchers.depth_matcher"
    line_gt_matcher = "matchers.depth_matcher"
    gt_matcher_conf = {"th_positive": 3.0, "th_negative": 5.0, "th_epi": None}

    match_errors = staticmethod(label_errors)

    def line_ground_truth(self, data: dict, pred: dict) -> torch.Tensor | None:
        if not self.conf.eval.eval_lines:
            return None
        return super().line_ground_truth(data, pred)

    def pair_metrics(self, record, data, pred):
        out = labelled_match_metrics(record)
        if self.conf.eval.eval_lines:
            out.update(line_match_metrics(record))
        return out

    def dataset_summaries(self, results: EvalResults) -> dict[str, float]:
        out = {}
        for key, lines in (("AP", False), ("AP_lines", True)):
            res = pooled_ap(results.records, lines)
            if res is not None:
                out[key] = res[0]
        return out

    def make_figures(self, out: Path, results: EvalResults) -> list[Path]:
        curves = {}
        for label, lines in (("points", False), ("lines", True)):
            res = pooled_ap(results.records, lines)
            if res is not None:
                curves[label] = (res[1], res[2], res[0])
        if not curves:
            return []
        return [pr_curve_figure(curves, "ETH3D matches", out / "pr_curve.png")]


main = make_main(ETH3DPipeline)

if __name__ == "__main__":
    main()
