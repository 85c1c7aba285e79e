"""Losses of the matchers: balanced NLL on a log-assignment with dustbins.

Ground-truth convention (shared with the ground-truth matchers): ``gt_matches0[i] = j``
for a positive, ``-1`` for a point that has no match (it should go to the dustbin) and
``-2`` for a point whose label is unknown (ignored). ``gt_assignment`` is the (B, M, N)
boolean matrix of positives. Padded keypoints (``keypoint_mask{0,1}`` False) are ignored.

Two forms of the same losses: on a dense (B, M+1, N+1) log-assignment (``nll_weights``
+ ``weighted_nll``, ``confidence_loss``: any matcher, and the definitions the tests
check against), and on the factors of a dual softmax (``dual_softmax`` ->
``dual_softmax_nll``, ``dual_softmax_agrees_with_final``: what LightGlue trains with,
never building the dense matrix or its gradient).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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


def _supervised(data: dict, b: int, m: int, n: int):
    """Positives (B, M, N) bool and the unmatched points of each image, (B, M) and
    (B, N) bool, padded points left out."""
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
    return pos, neg0, neg1, valid0, valid1


def nll_weights(log_assignment: torch.Tensor, data: dict) -> torch.Tensor:
    """(B, M+1, N+1) 0/1 weights of the log-assignment entries that the NLL supervises.

    1 on positives, 1 in the dustbin column for rows with ``gt_matches0 == -1``, 1 in the
    dustbin row for columns with ``gt_matches1 == -1``; ignored (-2) and padded points 0.
    """
    b, m1, n1 = log_assignment.shape
    m, n = m1 - 1, n1 - 1
    pos, neg0, neg1, _, _ = _supervised(data, b, m, n)
    weights = log_assignment.new_zeros(b, m + 1, n + 1)
    weights[:, :m, :n] = pos.to(weights)
    weights[:, :m, n] = neg0.to(weights)
    weights[:, m, :n] = neg1.to(weights)
    return weights


@dataclass
class NLLTargets:
    """The entries that the NLL supervises, gathered once per batch for every layer:
    the positives as indices (``b``, ``i``, ``j``: K each), how many positives each point
    has (``rows`` (B, M), ``cols`` (B, N)), the unmatched points (``neg0``, ``neg1``,
    bool) and the padding masks (None: no padding)."""

    b: torch.Tensor
    i: torch.Tensor
    j: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    neg0: torch.Tensor
    neg1: torch.Tensor
    valid0: torch.Tensor | None
    valid1: torch.Tensor | None


def nll_targets(data: dict, b: int, m: int, n: int) -> NLLTargets:
    """:class:`NLLTargets` of a batch of ``b`` pairs with ``m`` / ``n`` points (the
    same entries as :func:`nll_weights`, without the dense weight matrix)."""
    pos, neg0, neg1, valid0, valid1 = _supervised(data, b, m, n)
    if valid0 is not None and bool(valid0.all()):
        valid0 = None
    if valid1 is not None and bool(valid1.all()):
        valid1 = None
    bi, ii, jj = pos.nonzero(as_tuple=True)
    return NLLTargets(bi, ii, jj, pos.sum(2), pos.sum(1), neg0, neg1, valid0, valid1)


def _logsumexp_valid(sim: torch.Tensor, valid: torch.Tensor | None, dim: int):
    """logsumexp of ``sim`` (B, M, N) over ``dim``, the entries of padded points of the
    other image (``valid`` False) left out, unless that image has no point at all."""
    if valid is not None:
        keep = valid | ~valid.any(-1, keepdim=True)
        keep = keep[:, None, :] if dim == 2 else keep[:, :, None]
        sim = sim.masked_fill(~keep, -torch.inf)
    return sim.logsumexp(dim)


class DualSoftmax(NamedTuple):
    """The factors of a dual-softmax log-assignment (what
    :func:`~gluefactory.models.matchers.lightglue.layers.log_double_softmax` builds):
    ``log P_ij = 2 sim_ij - lse0_i - lse1_j + log sig(z0_i) + log sig(z1_j)``, dustbins
    ``log sig(-z)``. ``sim`` (B, M, N) (float32 at least), row and column logsumexps
    ``lse0`` (B, M) and ``lse1`` (B, N) over the real points, logits ``z0`` (B, M) and
    ``z1`` (B, N), the padding masks, and the projections m0, m1 that give ``sim``."""

    m0: torch.Tensor
    m1: torch.Tensor
    sim: torch.Tensor
    lse0: torch.Tensor
    lse1: torch.Tensor
    z0: torch.Tensor
    z1: torch.Tensor
    valid0: torch.Tensor | None
    valid1: torch.Tensor | None


def dual_softmax(m0, m1, z0, z1, valid0=None, valid1=None) -> DualSoftmax:
    """:class:`DualSoftmax` of the similarity ``m0 @ m1^T`` and matchability logits
    ``z0`` (B, M[, 1]), ``z1``: the dense terms are only the similarity and its two
    logsumexps (the softmaxes in float32 under autocast, as in log_double_softmax)."""
    sim = m0 @ m1.transpose(-1, -2)
    if sim.dtype in (torch.float16, torch.bfloat16):
        sim = sim.float()
    z0 = z0.reshape(sim.shape[:2]).to(sim.dtype)
    z1 = z1.reshape(sim.shape[0], sim.shape[2]).to(sim.dtype)
    lse0 = _logsumexp_valid(sim, valid1, 2)
    lse1 = _logsumexp_valid(sim, valid0, 1)
    return DualSoftmax(m0, m1, sim, lse0, lse1, z0, z1, valid0, valid1)


def dual_softmax_nll(
    ds: DualSoftmax, targets: NLLTargets, balancing: float = 0.5
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`weighted_nll` of the log-assignment of ``ds``, without building it.

    A positive (i, j) contributes 2 s_ij - lse0_i - lse1_j + log sig(z0_i) + log
    sig(z1_j), an unmatched point log sig(-z). This is what makes deep supervision
    cheap: no layer's (B, M+1, N+1) log-assignment or its gradient is materialised
    (docs/benchmarks.md: about half the time and half the memory). ``targets`` must come with the same padding masks as ``ds``.
    """
    t, dtype = targets, ds.sim.dtype
    zero = ds.sim.new_zeros(())
    # s_ij of the positives from the projections: no gather from the (B, M, N) matrix
    s = (ds.m0[t.b, t.i].to(dtype) * ds.m1[t.b, t.j].to(dtype)).sum(-1)
    pos_sum = ds.sim.new_zeros(ds.sim.shape[0]).index_add(0, t.b, 2 * s)
    rows, cols = t.rows.to(dtype), t.cols.to(dtype)
    pos_sum = pos_sum + torch.where(
        t.rows > 0, rows * (F.logsigmoid(ds.z0) - ds.lse0), zero
    ).sum(1)
    pos_sum = pos_sum + torch.where(
        t.cols > 0, cols * (F.logsigmoid(ds.z1) - ds.lse1), zero
    ).sum(1)
    neg_sum = torch.where(t.neg0, F.logsigmoid(-ds.z0), zero).sum(1) + torch.where(
        t.neg1, F.logsigmoid(-ds.z1), zero
    ).sum(1)
    num_neg = t.neg0.to(dtype).sum(1) + t.neg1.to(dtype).sum(1)
    return _balanced_nll(pos_sum, rows.sum(1), neg_sum, num_neg, balancing)


def _balanced_nll(pos_sum, num_pos, neg_sum, num_neg, balancing: float):
    """The balanced NLL (B,) and its parts from the summed log-probabilities of the
    positives and of the unmatched points (both images) and their counts."""
    nll_pos = -pos_sum / num_pos.clamp(min=1.0)
    nll_neg = -neg_sum / num_neg.clamp(min=1.0)
    nll = balancing * nll_pos + (1 - balancing) * nll_neg
    return nll, {
        "assignment_nll": nll,
        "nll_pos": nll_pos,
        "nll_neg": nll_neg,
        "num_matchable": num_pos,
        "num_unmatchable": num_neg / 2,
    }


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
    num_neg = weights[:, :m, n].sum(-1) + weights[:, m, :n].sum(-1)
    pos_sum = picked[:, :m, :n].sum((-1, -2))
    neg_sum = picked[:, :m, n].sum(-1) + picked[:, m, :n].sum(-1)
    return _balanced_nll(pos_sum, num_pos, neg_sum, num_neg, balancing)


def best_assignments(la: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax of each row (B, M) and column (B, N) of a (B, M+1, N+1) log-assignment,
    the dustbins included (index N, resp. M, = unmatched).

    ``max(dim).indices`` rather than ``argmax``: the same first-maximum indices, but
    faster on the CPU (docs/benchmarks.md), where four ``argmax`` per layer took
    most of LightGlue's training loss.
    """
    return la[:, :-1, :].max(-1).indices, la[:, :, :-1].max(-2).indices


def agrees_with_final(
    la_now: torch.Tensor, best_final: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether the final layer's choice of each point (``best_final``, from
    :func:`best_assignments`) is also the maximum of its row (column) of the
    log-assignment ``la_now`` (B, M+1, N+1), dustbin included: (B, M), (B, N) bool.

    A gather and an ``amax``, not an ``argmax`` (they differ only on exact ties)."""
    la_now = la_now.detach()
    rows, cols = la_now[:, :-1, :], la_now[:, :, :-1]
    ok0 = rows.gather(2, best_final[0][..., None]).squeeze(2) == rows.amax(2)
    ok1 = cols.gather(1, best_final[1][:, None]).squeeze(1) == cols.amax(1)
    return ok0, ok1


@torch.no_grad()
def dual_softmax_agrees_with_final(
    ds: DualSoftmax, best_final: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`agrees_with_final` of the log-assignment of ``ds``, without building it:
    within a row, log P_ij = [2 s_ij - lse1_j + log sig(z1_j)] + [log sig(z0_i) -
    lse0_i], so the row maximum is that of the first bracket (padded columns left out)
    plus the second, compared with the dustbin (columns alike)."""
    two_s = 2 * ds.sim

    def side(inner, shift, dust, valid_other, best, dim):
        if valid_other is not None:
            keep = valid_other[:, None, :] if dim == 2 else valid_other[:, :, None]
            inner = inner.masked_fill(~keep, -torch.inf)
        n = inner.shape[dim]
        picked = inner.gather(dim, best.clamp(max=n - 1).unsqueeze(dim)).squeeze(dim)
        picked = torch.where(best < n, picked + shift, dust)
        return picked == torch.maximum(inner.amax(dim) + shift, dust)

    lz0, lz1 = F.logsigmoid(ds.z0), F.logsigmoid(ds.z1)
    ok0 = side(
        two_s - (ds.lse1 - lz1)[:, None, :],
        lz0 - ds.lse0,
        F.logsigmoid(-ds.z0),
        ds.valid1,
        best_final[0],
        2,
    )
    ok1 = side(
        two_s - (ds.lse0 - lz0)[:, :, None],
        lz1 - ds.lse1,
        F.logsigmoid(-ds.z1),
        ds.valid0,
        best_final[1],
        1,
    )
    return ok0, ok1


def confidence_bce(
    logits0: torch.Tensor,
    logits1: torch.Tensor,
    ok0: torch.Tensor,
    ok1: torch.Tensor,
    valid0: torch.Tensor | None = None,
    valid1: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-confidence loss of one layer, (B,): BCE-with-logits against the labels
    ``ok0`` (B, M), ``ok1`` (B, N), averaged over the (valid) points of each image, then
    over the two images."""

    def mean_bce(logits, labels, valid):
        loss = F.binary_cross_entropy_with_logits(
            logits, labels.to(logits), reduction="none"
        )
        if valid is None:
            return loss.mean(-1)
        valid = valid.to(loss)
        return (loss * valid).sum(-1) / valid.sum(-1).clamp(min=1.0)

    return (mean_bce(logits0, ok0, valid0) + mean_bce(logits1, ok1, valid1)) / 2


def confidence_loss(
    logits0: torch.Tensor,
    logits1: torch.Tensor,
    la_now: torch.Tensor,
    best_final: tuple[torch.Tensor, torch.Tensor],
    valid0: torch.Tensor | None = None,
    valid1: torch.Tensor | None = None,
) -> torch.Tensor:
    """Token-confidence loss of one layer, (B,), from its dense log-assignment: the
    label of a point is :func:`agrees_with_final`, the loss :func:`confidence_bce`."""
    ok0, ok1 = agrees_with_final(la_now, best_final)
    return confidence_bce(logits0, logits1, ok0, ok1, valid0, valid1)
