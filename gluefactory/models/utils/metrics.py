"""Matching metrics against ground-truth matches (labels: j >= 0, -1 unmatched, -2 ignore).

All functions return one value per pair, shape (B,). Points whose ground truth is -2
(ignored) or that are padding (``valid`` False) never count.
"""

from __future__ import annotations

import torch


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return num / den.clamp(min=1e-8)


def _known(gt: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    known = gt >= -1
    return known if valid is None else known & valid.bool()


@torch.no_grad()
def match_recall(
    matches: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of the ground-truth positives that are predicted (same partner)."""
    pos = gt >= 0 if valid is None else (gt >= 0) & valid.bool()
    return _ratio(((matches == gt) & pos).sum(-1).float(), pos.sum(-1).float())


@torch.no_grad()
def match_precision(
    matches: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of the predicted matches of labelled points whose partner is right."""
    pred = (matches >= 0) & _known(gt, valid)
    return _ratio(((matches == gt) & pred).sum(-1).float(), pred.sum(-1).float())


@torch.no_grad()
def accuracy(
    matches: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Fraction of labelled points (positive or unmatched) whose prediction is right."""
    known = _known(gt, valid)
    return _ratio(((matches == gt) & known).sum(-1).float(), known.sum(-1).float())


@torch.no_grad()
def average_precision(
    matches: torch.Tensor,
    gt: torch.Tensor,
    scores: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Area under the precision-recall curve of the matches ranked by score.

    Predicted matches of labelled points are sorted by decreasing score; at each rank,
    precision is the fraction of correct ones so far and recall the fraction of all
    ground-truth positives found so far. AP = sum over ranks of precision x recall step.
    """
    pred = (matches >= 0) & _known(gt, valid)
    tp = (matches == gt) & pred
    num_pos = ((gt >= 0) if valid is None else (gt >= 0) & valid.bool()).sum(-1)
    order = torch.argsort(
        torch.where(pred, scores.float(), -torch.inf), -1, descending=True
    )
    pred_s = pred.gather(-1, order).float()
    tp_s = tp.gather(-1, order).float()
    precision = _ratio(tp_s.cumsum(-1), pred_s.cumsum(-1))
    recall_step = tp_s / num_pos.float().clamp(min=1.0)[..., None]
    return (precision * recall_step).sum(-1)


def matcher_metrics(pred: dict, data: dict) -> dict[str, torch.Tensor]:
    """The four metrics of image 0's matches (``matches0``, ``matching_scores0``)."""
    m, gt = pred["matches0"], data["gt_matches0"]
    valid = data.get("keypoint_mask0")
    return {
        "match_recall": match_recall(m, gt, valid),
        "match_precision": match_precision(m, gt, valid),
        "accuracy": accuracy(m, gt, valid),
        "average_precision": average_precision(m, gt, pred["matching_scores0"], valid),
    }
