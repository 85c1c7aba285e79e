"""The matching losses against their dense definitions: the token-confidence loss and
its fast argmax (plain argmax), the NLL without a dense log-assignment (weighted_nll of
log_double_softmax)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gluefactory.models.matchers.lightglue.layers import log_double_softmax
from gluefactory.models.utils.losses import (
    agrees_with_final,
    best_assignments,
    confidence_loss,
    dual_softmax,
    dual_softmax_agrees_with_final,
    dual_softmax_nll,
    nll_targets,
    nll_weights,
    weighted_nll,
)


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


def _nll_problem(seed: int, b=3, m=9, n=7, d=5):
    """Random projections and ground truth with positives, unmatched (-1) and
    ignored (-2) points; float64 leaves for gradient checks."""
    g = torch.Generator().manual_seed(seed)
    leaves = [
        torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
        for shape in ((b, m, d), (b, n, d), (b, m, 1), (b, n, 1))
    ]
    gt0 = torch.full((b, m), -1)
    gt1 = torch.full((b, n), -1)
    for k in range(b):
        rows = torch.randperm(m, generator=g)[:4]
        cols = torch.randperm(n, generator=g)[:4]
        gt0[k, rows], gt1[k, cols] = cols, rows
    gt0[:, -1] = torch.where(gt0[:, -1] < 0, -2, gt0[:, -1])
    gt1[:, 0] = torch.where(gt1[:, 0] < 0, -2, gt1[:, 0])
    return leaves, {"gt_matches0": gt0, "gt_matches1": gt1}


def _both_nlls(leaves, data, balancing=0.3):
    m0, m1, z0, z1 = leaves
    b, m, n = m0.shape[0], m0.shape[1], m1.shape[1]
    valid0, valid1 = data.get("keypoint_mask0"), data.get("keypoint_mask1")
    la = log_double_softmax(m0 @ m1.transpose(1, 2), z0, z1, valid0, valid1)
    dense = weighted_nll(la, nll_weights(la, data), balancing)
    t = nll_targets(data, b, m, n)
    sparse = dual_softmax_nll(dual_softmax(*leaves, t.valid0, t.valid1), t, balancing)
    return dense, sparse


def _assert_same(dense, sparse, leaves):
    for key in dense[1]:
        torch.testing.assert_close(sparse[1][key], dense[1][key], msg=key)
    grads_d = torch.autograd.grad(dense[0].sum(), leaves)
    grads_s = torch.autograd.grad(sparse[0].sum(), leaves)
    for gd, gs in zip(grads_d, grads_s):
        torch.testing.assert_close(gs, gd)


def test_dual_softmax_nll_equals_the_dense_nll():
    leaves, data = _nll_problem(0)
    _assert_same(*_both_nlls(leaves, data), leaves)


def test_dual_softmax_nll_with_padding_and_empty_images():
    leaves, data = _nll_problem(1)
    valid0 = torch.ones(3, 9, dtype=torch.bool)
    valid1 = torch.ones(3, 7, dtype=torch.bool)
    valid0[0, 6:] = False
    valid1[1, 5:] = False
    valid1[2] = False  # image 1 of pair 2 has no point at all
    data.update(keypoint_mask0=valid0, keypoint_mask1=valid1)
    dense, sparse = _both_nlls(leaves, data)
    assert sparse[1]["num_matchable"][2] == 0
    assert torch.isfinite(sparse[0]).all()
    _assert_same(dense, sparse, leaves)
    data.update(keypoint_mask0=torch.ones_like(valid0))  # all-true: the no-mask path
    data.update(keypoint_mask1=torch.ones_like(valid1))
    assert nll_targets(data, 3, 9, 7).valid0 is None
    _assert_same(*_both_nlls(leaves, data), leaves)


def test_dual_softmax_nll_with_a_dense_gt_assignment():
    """gt_assignment (which may give a point several positives) wins over
    gt_matches0, as in nll_weights."""
    leaves, data = _nll_problem(2)
    pos = torch.zeros(3, 9, 7, dtype=torch.bool)
    pos[0, 1, 2] = pos[0, 1, 3] = pos[0, 4, 3] = pos[2, 0, 0] = True
    data["gt_assignment"] = pos
    dense, sparse = _both_nlls(leaves, data)
    assert sparse[1]["num_matchable"].tolist() == [3.0, 0.0, 1.0]
    _assert_same(dense, sparse, leaves)


def test_dual_softmax_nll_in_bfloat16_follows_float32():
    """Low-precision projections: the softmaxes run in float32, as in the dense head."""
    leaves, data = _nll_problem(3, m=64, n=48, d=16)
    low = [x.detach().to(torch.bfloat16) for x in leaves]
    ref = [x.detach().float() for x in low]  # the same rounded values, in float32
    t = nll_targets(data, 3, 64, 48)
    got, _ = dual_softmax_nll(dual_softmax(*low), t)
    want, _ = dual_softmax_nll(dual_softmax(*ref), t)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-2, atol=2e-2)


def test_dual_softmax_agreement_equals_the_dense_labels():
    """The token-confidence labels without the dense log-assignment are those of
    agrees_with_final on it, padded points and an image without points included."""
    (m0, m1, z0, z1), _ = _nll_problem(4, b=4, m=11, n=8, d=6)
    m0, m1 = 2 * m0.detach(), 2 * m1.detach()  # peaked rows: not all dustbin
    noise = torch.randn(m0.shape, generator=torch.Generator().manual_seed(5))
    valid0 = torch.ones(4, 11, dtype=torch.bool)
    valid1 = torch.ones(4, 8, dtype=torch.bool)
    valid0[1, 7:] = False
    valid1[2, 5:] = False
    valid1[3] = False
    for v0, v1 in ((None, None), (valid0, valid1)):
        with torch.no_grad():
            la_now = log_double_softmax(m0 @ m1.transpose(1, 2), z0, z1, v0, v1)
            la_final = log_double_softmax(
                (m0 + 2 * noise) @ m1.transpose(1, 2), z0, z1, v0, v1
            )
        best = best_assignments(la_final)
        want = agrees_with_final(la_now, best)
        got = dual_softmax_agrees_with_final(dual_softmax(m0, m1, z0, z1, v0, v1), best)
        assert 0 < want[0].float().mean() < 1  # both labels occur
        for g, w, v in zip(got, want, (v0, v1)):
            keep = torch.ones_like(w) if v is None else v  # padded: no weight anyway
            assert torch.equal(g[keep], w[keep])
