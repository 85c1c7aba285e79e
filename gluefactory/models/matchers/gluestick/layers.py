"""The layers of GlueStick (Pautrat et al., ICCV 2023), in the official parameter layout.

- :func:`mlp` / :func:`run_mlp`: SuperGlue-style MLPs of 1x1 convolutions with
  BatchNorm and ReLU, run on tokens (B, T, C); padded tokens never enter the batch
  statistics, and each image has its own statistics, as in upstream's per-image calls;
- :class:`KeypointEncoder` and :class:`EndpointEncoder`: position (+ line direction)
  and score -> a D-dimensional code added to the descriptors (points) or fed to the
  line layers (endpoints);
- :class:`GNNLayer`: one self- or cross-attention update x <- x + MLP([x | message]),
  weights shared by the two images;
- :class:`LineLayer`: line message passing, each endpoint receives a message from the
  other endpoint of its line, averaged over the lines of a junction;
- :func:`log_double_softmax`: the dual softmax with one learnt dustbin score.

Parameters stay ``nn.Conv1d`` (weights (out, in, 1)) so that the official checkpoint
loads unchanged; they are applied as linear maps on channels-last tokens.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..lightglue.fast import CachedDerived, attend_both


def mlp(channels: list[int]) -> nn.Sequential:
    """Conv1d(k=1) layers with BatchNorm + ReLU between them (official layout)."""
    layers: list[nn.Module] = []
    for i in range(1, len(channels)):
        layers.append(nn.Conv1d(channels[i - 1], channels[i], kernel_size=1))
        if i < len(channels) - 1:
            layers += [nn.BatchNorm1d(channels[i]), nn.ReLU()]
    return nn.Sequential(*layers)


def pointwise(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution on tokens (B, T, C_in) -> (B, T, C_out)."""
    return F.linear(x, conv.weight[..., 0], conv.bias)


def batch_norm(
    bn: nn.BatchNorm1d, x: torch.Tensor, valid: torch.Tensor | None, m: int
) -> torch.Tensor:
    """BatchNorm of tokens (B, T, C); image 0 = the first ``m`` tokens.

    Inference: the running statistics. Training: the statistics of each image's real
    tokens (``valid`` True), as upstream's separate calls per image on unpadded input;
    padded tokens get 0 and never update the running statistics.
    """
    c = x.shape[-1]
    if not bn.training:
        flat = F.batch_norm(
            x.reshape(-1, c), bn.running_mean, bn.running_var, bn.weight, bn.bias,
            False, 0.0, bn.eps,
        )  # fmt: skip
        return flat.view(x.shape)
    parts = []
    for sl in (slice(0, m), slice(m, None)):
        xi = x[:, sl]
        vi = None if valid is None else valid[:, sl]
        sel = xi.reshape(-1, c) if vi is None else xi[vi]
        if sel.shape[0] > 1:
            y = bn(sel)
        else:  # no statistics from a single token: the running ones
            y = F.batch_norm(
                sel, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                False, 0.0, bn.eps,
            )  # fmt: skip
        if vi is None:
            parts.append(y.view(xi.shape))
        else:
            parts.append(xi.new_zeros(xi.shape).masked_scatter(vi[..., None], y))
    return torch.cat(parts, 1)


def run_mlp(
    seq: nn.Sequential, x: torch.Tensor, valid: torch.Tensor | None, m: int
) -> torch.Tensor:
    """Apply an :func:`mlp` to tokens (B, T, C) of two images (image 0 = first m)."""
    for layer in seq:
        if isinstance(layer, nn.Conv1d):
            x = pointwise(layer, x)
        elif isinstance(layer, nn.BatchNorm1d):
            x = batch_norm(layer, x, valid, m)
        else:
            x = layer(x)
    return x


class KeypointEncoder(nn.Module):
    """(x, y, score) of each keypoint -> (B, N, D)."""

    inputs = 3

    def __init__(self, dim: int, layers: list[int]):
        super().__init__()
        self.encoder = mlp([self.inputs, *layers, dim])
        nn.init.constant_(self.encoder[-1].bias, 0.0)

    def forward(self, kpts, scores, valid, m: int) -> torch.Tensor:
        """kpts (B, T, 2) normalised, scores (B, T); tokens of both images."""
        return run_mlp(self.encoder, torch.cat([kpts, scores[..., None]], -1), valid, m)


class EndpointEncoder(KeypointEncoder):
    """(x, y, direction to the other endpoint, score) of each endpoint -> (B, 2L, D)."""

    inputs = 5

    def forward(self, lines, scores, valid, m: int) -> torch.Tensor:
        """lines (B, L, 2, 2) normalised, scores (B, 2L) per endpoint, valid (B, 2L);
        ``m`` endpoints of image 0 first."""
        b, n = lines.shape[:2]
        offset = lines[:, :, 1] - lines[:, :, 0]
        offset = torch.stack([offset, -offset], 2)
        inputs = [lines.reshape(b, 2 * n, 2), offset.reshape(b, 2 * n, 2)]
        inputs.append(scores[..., None])
        return run_mlp(self.encoder, torch.cat(inputs, -1), valid, m)


def _head_major(wq, wk, wv, bq, bk, bv, merge_w, perm):
    """The q/k/v projections stacked with rows in head-major order (row h * d + j =
    official channel j * H + h), and the merge with its columns in that order."""
    w = torch.cat([wq[perm], wk[perm], wv[perm]])
    return w, torch.cat([bq[perm], bk[perm], bv[perm]]), merge_w[:, perm]


class MultiHeadedAttention(nn.Module):
    """SuperGlue's attention: separate q/k/v projections, heads interleaved in the
    channels (channel c = feature c // H of head c % H), one merge projection.

    Evaluated with the rows of the projections permuted to head-major order (cached at
    inference), so that each head's features are contiguous: same results.
    """

    def __init__(self, num_heads: int, dim: int):
        super().__init__()
        self.heads = num_heads
        self.merge = nn.Conv1d(dim, dim, kernel_size=1)
        self.proj = nn.ModuleList([copy.deepcopy(self.merge) for _ in range(3)])
        head_dim = dim // num_heads
        perm = torch.arange(dim).view(head_dim, num_heads).t().reshape(-1)
        self.register_buffer("perm", perm, persistent=False)
        self._derived = CachedDerived(_head_major)

    def forward(self, x, m: int, mask0, mask1, cross: bool) -> torch.Tensor:
        """Messages (B, T, D) for the tokens x (B, T, D) of both images (image 0 =
        first m); self-attention within each image or cross-attention between them."""
        b, t, d = x.shape
        w, bias, merge_w = self._cached()
        qkv = F.linear(x, w, bias).view(b, t, 3, self.heads, d // self.heads)
        msg = attend_both(*qkv.unbind(2), m, mask0, mask1, cross)
        return F.linear(msg, merge_w, self.merge.bias)

    def _cached(self):
        p = self.proj
        return self._derived(
            *(p[0].weight[..., 0], p[1].weight[..., 0], p[2].weight[..., 0]),
            *(p[0].bias, p[1].bias, p[2].bias),
            self.merge.weight[..., 0],
            self.perm,
        )


class AttentionalPropagation(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.attn = MultiHeadedAttention(num_heads, dim)
        self.mlp = mlp([2 * dim, 2 * dim, dim])
        nn.init.constant_(self.mlp[-1].bias, 0.0)


class GNNLayer(nn.Module):
    """x <- x + MLP([x | attention message]) for the tokens of both images."""

    def __init__(self, dim: int, kind: str, num_heads: int = 4):
        super().__init__()
        if kind not in ("self", "cross"):
            raise ValueError(f"GNN layer type must be self or cross, got {kind!r}.")
        self.type = kind
        self.update = AttentionalPropagation(dim, num_heads)

    def forward(self, x, m: int, valid, mask0, mask1) -> torch.Tensor:
        """x (B, M+N, D); valid (B, M+N) or None; mask0/1 the attention key masks."""
        msg = self.update.attn(x, m, mask0, mask1, self.type == "cross")
        return x + run_mlp(self.update.mlp, torch.cat([x, msg], -1), valid, m)


class LineLayer(nn.Module):
    """Line message passing: endpoint e of a line gets MLP([x_e | x_other | enc_e]),
    averaged over all the lines that meet at its junction, added to the junction."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = mlp([3 * dim, 2 * dim, dim])

    def forward(self, x, m: int, junc, enc, valid_ends, n_ends0: int):
        """x (B, M+N, D) tokens; junc (B, 2L0+2L1) the token index of each endpoint
        (image 1's already offset by M); enc (B, 2L0+2L1, D) endpoint encodings;
        valid_ends (B, 2L0+2L1) bool or None; n_ends0 = 2 L0."""
        b, t, d = x.shape
        ends = x.gather(1, junc[..., None].expand(-1, -1, d))
        other = ends.view(b, -1, 2, d).flip(2).reshape(ends.shape)
        update = run_mlp(
            self.mlp, torch.cat([ends, other, enc], -1), valid_ends, n_ends0
        )
        # mean over the lines of each junction; padded lines go to a dropped slot t
        idx = junc if valid_ends is None else junc.masked_fill(~valid_ends, t)
        total = x.new_zeros(b, t + 1, d).scatter_reduce(
            1, idx[..., None].expand(-1, -1, d), update.to(x.dtype), "mean",
            include_self=False,
        )  # fmt: skip
        return x + total[:, :t]


def log_double_softmax(
    scores: torch.Tensor,
    bin_score: torch.Tensor,
    valid0: torch.Tensor | None = None,
    valid1: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, M, N) scores -> (B, M+1, N+1) log-assignment with a dustbin of score
    ``bin_score``: the mean of the row and column log-softmaxes (each over the real
    entries plus the dustbin); dustbin column/row from the row/column softmax.

    Padded entries (``valid`` False) are -inf inside, 0 in their dustbin.
    """
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()
    b, m, n = scores.shape
    bin_ = bin_score.to(scores)
    s = scores
    if valid1 is not None:
        s = s.masked_fill(~valid1[:, None, :], -torch.inf)
    rows = torch.cat([s, bin_.expand(b, m, 1)], 2).log_softmax(2)
    s = scores
    if valid0 is not None:
        s = s.masked_fill(~valid0[:, :, None], -torch.inf)
    cols = torch.cat([s, bin_.expand(b, 1, n)], 1).log_softmax(1)
    inner = (rows[:, :, :n] + cols[:, :m, :]) / 2
    dust0, dust1 = rows[:, :, n], cols[:, m, :]
    if valid0 is not None or valid1 is not None:
        v0 = valid0 if valid0 is not None else scores.new_ones(b, m, dtype=torch.bool)
        v1 = valid1 if valid1 is not None else scores.new_ones(b, n, dtype=torch.bool)
        inner = inner.masked_fill(~(v0[:, :, None] & v1[:, None, :]), -torch.inf)
        dust0, dust1 = dust0.masked_fill(~v0, 0.0), dust1.masked_fill(~v1, 0.0)
    top = torch.cat([inner, dust0[..., None]], 2)
    bottom = torch.cat([dust1, dust1.new_zeros(b, 1)], 1)[:, None]
    return torch.cat([top, bottom], 1)
