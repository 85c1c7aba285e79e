"""MegaDepth-1500 relative-pose benchmark (protocol of glue-factory, ``docs/evaluation.md``).

    python -m gluefactory.eval.megadepth1500 --conf aliked+lightglue-official
    python -m gluefactory.eval.megadepth1500 --conf aliked+lightglue-official \\
        eval.estimator=poselib eval.ransac_th=2.0

The 1500 LoFTR test pairs of scenes 0015 and 0022 in the ``posed_images`` format.
Features are extracted with the config's ``benchmarks.megadepth1500.data.preprocessing``
(long side 1600 in the shipped configs, 2048 keypoints) and evaluated at the ORIGINAL
resolution with the original intrinsics (the exported keypoints are in original
pixels). Per pair: ``epi_prec@1e-4/5e-4/1e-3`` (symmetric epipolar distance, normalised
units), ``num_matches``, ``num_keypoints``; with depth, ``reproj_prec@1/3/5px``,
``covisible``, ``covisible_percent``, ``gt_match_recall@3px`` and
``gt_match_precision@3px`` (depth GT, 3 px positives, 5 px negatives); the pose error
max(R error, t angle folded to [0, 90°]) of the robust estimator and its inliers.
Summaries: MEANS of the per-match metrics, MEDIANS of the inliers, pose AUC at 5/10/20°
(rounded to 4 decimals, failures as inf) and their mean (mAA).

With lines: ``num_lines``, ``num_line_matches``, ``line_prec`` and ``line_rec`` against
the depth's line ground truth (``matchers.depth_matcher`` with ``use_lines``, at the
evaluation's original resolution). The relative pose is estimated from points only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..geometry.gt_generation import gt_matches_from_pose_depth
from ..models.utils.metrics import match_precision, match_recall
from ..utils.conf import as_plain
from ..utils.tensor import batch_to_device, unbatch
from .cli import make_main
from .figures import recall_and_worst_figures
from .metrics import (
    EPI_PREC_THRESHOLDS,
    POSE_AUC_THRESHOLDS,
    REPROJ_PREC_THRESHOLDS,
    depth_match_metrics,
    epipolar_match_errors,
    epipolar_match_metrics,
    line_match_metrics,
    relative_pose_metrics,
    threshold_name,
)
from .pipeline import EvalPipeline
from .stages import EvalResults

GT_POSITIVE_TH = 3.0  # px
GT_NEGATIVE_TH = 5.0  # px


def _md_reported() -> list[tuple[str, str]]:
    rows = [
        (f"mean_epi_prec@{threshold_name(t)}", f"mepi_prec@{threshold_name(t)}")
        for t in EPI_PREC_THRESHOLDS
    ]
    rows += [
        ("mean_num_matches", "mnum_matches"),
        ("mean_num_keypoints", "mnum_keypoints"),
    ]
    rows += [
        (f"mean_reproj_prec@{t}px", f"mreproj_prec@{t}px")
        for t in REPROJ_PREC_THRESHOLDS
    ]
    rows += [
        ("mean_covisible", "mcovisible"),
        ("mean_covisible_percent", "mcovisible_percent"),
        ("mean_gt_match_recall@3px", "mgt_match_recall@3px"),
        ("mean_gt_match_precision@3px", "mgt_match_precision@3px"),
    ]
    rows += [
        (f"rel_pose_error@{t}deg", f"rel_pose_error@{t}°") for t in POSE_AUC_THRESHOLDS
    ]
    rows += [
        ("rel_pose_error_mAA", "rel_pose_error_mAA"),
        ("median_ransac_inl", "mransac_inl"),
        ("median_ransac_inl%", "mransac_inl%"),
        ("ransac_th", "ransac_th"),
    ]
    return rows


#: rows of models with lines
LINE_ROWS = [
    (f"mean_{k}", f"mean_{k}")
    for k in ("num_lines", "num_line_matches", "line_prec", "line_rec")
]


def gt_match_metrics(data: dict, pred: dict) -> dict[str, float]:
    """``gt_match_recall@3px`` / ``gt_match_precision@3px`` against depth GT matches.

    All keypoints of both images are labelled (M x N distances: about 0.5 s for 2048
    keypoints on one CPU core), on CUDA when available, as upstream.
    """
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data, pred = batch_to_device(data, device), batch_to_device(pred, device)
    v0, v1 = data["view0"], data["view1"]
    kp0, kp1 = pred["keypoints0"][None].float(), pred["keypoints1"][None].float()
    gt = gt_matches_from_pose_depth(
        kp0,
        kp1,
        v0["camera"].float(),
        v1["camera"].float(),
        data["T_0to1"].float(),
        data["T_1to0"].float() if "T_1to0" in data else None,
        depth0=v0["depth"].float(),
        depth1=v1["depth"].float(),
        th_positive=GT_POSITIVE_TH,
        th_negative=GT_NEGATIVE_TH,
        th_epi=None,  # as upstream's metric: no epipolar negatives
        mask0=pred["keypoint_mask0"][None] if "keypoint_mask0" in pred else None,
        mask1=pred["keypoint_mask1"][None] if "keypoint_mask1" in pred else None,
    )
    m0 = pred["matches0"][None].long()
    return {
        "gt_match_recall@3px": float(match_recall(m0, gt["matches0"])[0].cpu()),
        "gt_match_precision@3px": float(match_precision(m0, gt["matches0"])[0].cpu()),
    }


class MegaDepth1500Pipeline(EvalPipeline):
    default_conf = {
        "data": {
            "name": "posed_images",
            "root": "",
            "image_dir": "{scene}/images",
            "depth_dir": "{scene}/depths",
            "views": "{scene}/views.txt",
            "view_groups": "{scene}/pairs.txt",
            "depth_format": "h5",
            "scene_list": ["megadepth1500"],
            "preprocessing": {"side": "long"},
        },
        "eval": {"estimator": "poselib", "ransac_th": 1.0},
    }
    name = "megadepth1500"
    estimator_kind = "relative_pose"
    robust_key = "rel_pose_error"
    reported = _md_reported()
    optional_reported = LINE_ROWS
    correct_th = 5e-4  # normalised epipolar distance, colour of the figures' matches
    line_gt_matcher = "matchers.depth_matcher"

    match_errors = staticmethod(epipolar_match_errors)
    robust_metrics = staticmethod(relative_pose_metrics)

    def eval_data_conf(self) -> DictConfig:
        """The export's data at ORIGINAL resolution (no resize, original intrinsics)."""
        conf = as_plain(self.conf.data)
        conf["preprocessing"] = {"resize": None, "side": "long"}
        return OmegaConf.create(conf)

    def pair_metrics(self, record, data, pred):
        out = epipolar_match_metrics(record)
        v0, v1 = data["view0"], data["view1"]
        if "depth" in v0 and "depth" in v1:
            depths = [unbatch(v["depth"], 2, "depth") for v in (v0, v1)]
            out.update(depth_match_metrics(record, *depths))
            out.update(gt_match_metrics(data, pred))
        out.update(line_match_metrics(record))
        return out

    def make_figures(self, out: Path, results: EvalResults) -> list[Path]:
        panel = (
            {self.conf.eval.estimator: results.per_pair["rel_pose_error"]},
            POSE_AUC_THRESHOLDS,
            "MegaDepth-1500 relative pose",
            "pose error max(R, t) [deg]",
        )
        return recall_and_worst_figures(
            self, out, "pose_recall.png", panel, results, "rel_pose_error"
        )


main = make_main(MegaDepth1500Pipeline)

if __name__ == "__main__":
    main()
