"""The token-confidence loss and its fast argmax, against the plain argmax definition."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gluefactory.models.matchers.lightglue.layers import log_double_softmax
from gluefactory.models.utils.losses import best_assignments, confidence_loss


def _log_assignment(seed: int, valid0, valid1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    b, m, n = valid0.shape[0], valid0.shape[1], valid1.shape[1]
    sim = torch.randn(b, m, n, generator=g) * 3
    z0, z1 = torch.randn(b, m, 1, generator=g), torch.randn(b, n, 1, generator=g)
    return log_double_softmax(sim, z0, z1, valid0, valid1)


def test_best_assignments_is_argmax():
    valid0 = torch.ones(2, 7, dtype=torch.bool)
    valid1 = torch.ones(2, 5, dtype=torch.bool)
    valid1[1, 3:] = False
    la = _log_assignment(0, valid0, valid1)
    rows, cols = best_assignments(la)
    assert torch.equal(rows, la[:, :-1, :].argmax(-1))
    assert torch.equal(cols, la[:, :, :-1].argmax(-2))
    assert (cols[1, 3:] == 7).all()  # padded columns: the dustbin row


def test_confidence_loss_matches_the_argmax_definition():
    valid0 = torch.ones(3, 9, dtype=torch.bool)
    valid1 = torch.ones(3, 6, dtype=torch.bool)
    valid0[2, 6:] = False
    la_now = _log_assignment(1, valid0, valid1)
    la_final = la_now.clone()
    la_final[:, :4] = _log_assignment(2, valid0, valid1)[:, :4]  # some choices change
    logits0, logits1 = torch.randn(3, 9), torch.randn(3, 6)

    ok0 = la_now[:, :-1].argmax(-1) == la_final[:, :-1].argmax(-1)
    ok1 = la_now[:, :, :-1].argmax(-2) == la_final[:, :, :-1].argmax(-2)
    assert 0 < ok0.float().mean() < 1  # both labels occur
    bce = lambda x, y: F.binary_cross_entropy_with_logits(
        x, y.float(), reduction="none"
    )  # noqa: E731
    v0 = valid0.float()
    expected = (
        (bce(logits0, ok0) * v0).sum(-1) / v0.sum(-1) + bce(logits1, ok1).mean(-1)
    ) / 2

    got = confidence_loss(
        logits0, logits1, la_now, best_assignments(la_final), valid0, valid1
    )
    assert torch.allclose(got, expected)
