"""Losses of the matchers: balanced NLL on a log-assignment with dustbins.

Ground-truth convention (shared with the ground-truth matchers): ``gt_matches0[i] = j``
for a positive, ``-1`` for a point that has no match (it should go to the dustbin) and
``-2`` for a point whose label is unknown (ignored). ``gt_assignment`` is the (B, M, N)
boolean matrix of positives. Padded keypoints (``keypoint_mask{0,1}`` False) are ignored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gt_positives(data: dict, m: int, n: int) -> torch.Tensor:
    """(B, M, N) bool matrix of positives from ``gt_assignment`` or ``gt_matches0``."""
    if "gt_assignment" in data:
        pos = data["gt_assignment"].bool()
        if pos.shape[-2:] != (m, n):
            raise ValueError(
                f"gt_assignment has shape {tuple(pos.shape)}, expected (B, {m}, {n})."
            )
        return pos
    if "gt_matches0" not in data:
        raise KeyError(
            "The matching loss needs gt_assignment or gt_matches0 in the data."
        )
    gt0 = data["gt_matches0"]
    pos = torch.zeros(gt0.shape[0], m, n + 1, dtype=torch.bool, device=gt0.device)
    # rows without a positive write into the extra column n, dropped below
    pos.scatter_(2, torch.where(gt0 >= 0, gt0, n).long().unsqueeze(-1), True)
    return pos[..., :n]


def _valid(data: dict, key: str, shape, device) -> torch.Tensor | None:
    mask = data.get(key)
    return None if mask is None else mask.bool().to(device).expand(shape)


def nll_weights(log_assignment: torch.Tensor, data: dict) -> torch.Tensor:
    """(B, M+1, N+1) 0/1 weights of the log-assignment entries that the NLL supervises.

    1 on positives, 1 in the dustbin column for rows with ``gt_matches0 == -1``, 1 in the
    dustbin row for columns with ``gt_matches1 == -1``; ignored (-2) and padded points 0.
    """
    b, m1, n1 = log_assignment.shape
    m, n = m1 - 1, n1 - 1
    pos = gt_positives(data, m, n)
    neg0 = data["gt_matches0"] == -1
    neg1 = data["gt_matches1"] == -1
    valid0 = _valid(data, "keypoint_mask0", (b, m), pos.device)
    valid1 = _valid(data, "keypoint_mask1", (b, n), pos.device)
    if valid0 is not None:
        neg0 = neg0 & valid0
        pos = pos & valid0[:, :, None]
    if valid1 is not None:
        neg1 = neg1 & valid1
        pos = pos & valid1[:, None, :]
    weights = log_assignment.new_zeros(b, m + 1, n + 1)
    weights[:, :m, :n] = pos.to(weights)
    weights[:, :m, n] = neg0.to(weights)
    weights[:, m, :n] = neg1.to(weights)
    return weights


def weighted_nll(
    log_assignment: torch.Tensor, weights: torch.Tensor, balancing: float = 0.5
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Balanced NLL of each pair, (B,), and its parts.

    nll = balancing * nll_pos + (1 - balancing) * nll_neg, where nll_pos is the mean
    negative log-probability of the positives and nll_neg that of the unmatched points
    of both images (one mean over the two dustbins). Entries with weight 0 may be -inf
    (padded or pruned points): they never reach the sum.
    """
    m, n = log_assignment.shape[-2] - 1, log_assignment.shape[-1] - 1
    picked = torch.where(weights > 0, log_assignment, log_assignment.new_zeros(()))
    picked = picked * weights
    num_pos = weights[:, :m, :n].sum((-1, -2))
    num_neg0 = weights[:, :m, n].sum(-1)
    num_neg1 = weights[:, m, :n].sum(-1)
    nll_pos = -picked[:, :m, :n].sum((-1, -2)) / num_pos.clamp(min=1.0)
    nll_neg = -(picked[:, :m, n].sum(-1) + picked[:, m, :n].sum(-1)) / (
        num_neg0 + num_neg1
    ).clamp(min=1.0)
    nll = balancing * nll_pos + (1 - balancing) * nll_neg
    return nll, {
        "assignment_nll": nll,
        "nll_pos": nll_pos,
        "nll_neg": nll_neg,
        "num_matchable": num_pos,
        "num_unmatchable": (num_neg0 + num_neg1) / 2,
    }


def best_assignments(la: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax of each row (B, M) and column (B, N) of a (B, M+1, N+1) log-assignment,
    the dustbins included (index N, resp. M, = unmatched).

    ``max(dim).indices`` rather than ``argmax``: the same first-maximum indices, but
    faster on the CPU (benchmarks/hot_paths.py), where four ``argmax`` per layer took
    most of LightGlue's training loss.
    """
    return la[:, :-1, :].max(-1).indices, la[:, :, :-1].max(-2).indices


def confidence_loss(
    logits0: torch.Tensor,
    logits1: torch.Tensor,
    la_now: torch.Tensor,
    best_final: tuple[torch.Tensor, torch.Tensor],
    valid0: torch.Tensor | None = None,
    valid1: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-confidence loss of one layer, (B,).

    Label of a point: the final layer's choice for it (``best_final``, from
    :func:`best_assignments` of the final log-assignment) is also the maximum of its row
    (column) in this layer's log-assignment, dustbin included. BCE-with-logits averaged over
    the (valid) points of each image, then over the two images.
    """
    la_now = la_now.detach()
    rows, cols = la_now[:, :-1, :], la_now[:, :, :-1]
    # "the final choice is this layer's maximum": a gather and an amax, not an argmax
    # (they differ only on exact ties)
    ok0 = rows.gather(2, best_final[0][..., None]).squeeze(2) == rows.amax(2)
    ok1 = cols.gather(1, best_final[1][:, None]).squeeze(1) == cols.amax(1)

    def mean_bce(logits, labels, valid):
        loss = F.binary_cross_entropy_with_logits(
            logits, labels.to(logits), reduction="none"
        )
        if valid is None:
            return loss.mean(-1)
        valid = valid.to(loss)
        return (loss * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)

    return (mean_bce(logits0, ok0, valid0) + mean_bce(logits1, ok1, valid1)) / 2
