"""The layers of LightGlue, as in the paper (Sec. 3).

- :func:`normalize_keypoints` and :class:`LearnableFourierPositionalEncoding`: keypoints
  -> rotary encoding of their (normalised) positions;
- :class:`SelfBlock` / :class:`CrossBlock` / :class:`TransformerLayer`: one layer =
  self-attention with rotary encoding, then bidirectional cross-attention, each followed
  by an MLP update of the state, x <- x + MLP([x | message]);
- :class:`MatchAssignment` (:func:`log_double_softmax`): the assignment head, dual-softmax
  similarity times matchability, with a dustbin for unmatched points;
- :class:`TokenConfidence`: per-point confidence, for early exit and pruning;
- :func:`filter_matches`: mutual best matches above a score threshold.

Parameter names are those of the official weights. How the blocks are evaluated
(fused/permuted projections, folded out-projection, in-place rotation) is in
:mod:`.fast`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast import (
    CachedDerived,
    FoldedUpdate,
    attend_both,
    concat_rows,
    permute_rows,
    rotary_half_permutation,
    rotate_halves,
)


def normalize_keypoints(
    kpts: torch.Tensor,
    size: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, N, 2) pixels -> about [-1, 1]: (k - size / 2) / (max(size) / 2).

    ``size`` is (B, 2) or (2,) as (w, h); without it the keypoint extent + 1 (over the
    real points of ``mask``) is used, as in glue-factory.
    """
    if size is None:
        if mask is None:
            hi, lo = kpts.amax(-2), kpts.amin(-2)
        else:
            m = mask[..., None]
            hi = torch.where(m, kpts, -torch.inf).amax(-2).nan_to_num(0, 0, 0)
            lo = torch.where(m, kpts, torch.inf).amin(-2).nan_to_num(0, 0, 0)
        size = (1 + hi - lo).clamp(min=1)
    size = torch.as_tensor(size).to(kpts)
    if size.dim() == 1:
        size = size.expand(kpts.shape[0], 2)
    shift = size / 2
    scale = size.amax(-1) / 2
    return (kpts - shift[:, None]) / scale[:, None, None]


def key_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """(B, N) real-key mask -> (B, 1, 1, N) attention mask; an image without any real
    key attends to all of them (its outputs are unused; no NaN)."""
    if valid is None:
        return None
    valid = valid | ~valid.any(-1, keepdim=True)
    return valid[:, None, None, :]


def _ffn(dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2 * dim, 2 * dim),
        nn.LayerNorm(2 * dim, elementwise_affine=True),
        nn.GELU(),
        nn.Linear(2 * dim, dim),
    )


class LearnableFourierPositionalEncoding(nn.Module):
    """Keypoints (B, N, M) -> (cos, sin) of learnt projections, each (B, N, head_dim/2)."""

    def __init__(self, in_dim: int, head_dim: int, gamma: float = 1.0):
        super().__init__()
        self.Wr = nn.Linear(in_dim, head_dim // 2, bias=False)
        nn.init.normal_(self.Wr.weight.data, mean=0.0, std=gamma**-2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        proj = self.Wr(x)
        return proj.cos(), proj.sin()


class SelfBlock(FoldedUpdate):
    """Self-attention of each image with rotary position encoding, then the update.

    ``Wqkv`` keeps the official layout (output row = head, feature, {q, k, v}).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.Wqkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.ffn = _ffn(dim)
        perm = rotary_half_permutation(num_heads, dim // num_heads)
        self.register_buffer("perm", perm, persistent=False)
        self._qkv = CachedDerived(permute_rows)

    def forward(self, x, cos, sin, m: int, mask0=None, mask1=None):
        """x (B, T, D) tokens (image 0 = first m); cos/sin (B, T, head_dim/2)."""
        b, t, _ = x.shape
        w, bias = self._qkv(self.Wqkv.weight, self.Wqkv.bias, self.perm)
        qkv = F.linear(x, w, bias).view(b, t, 3, self.num_heads, -1)
        qk = rotate_halves(qkv[:, :, :2], cos[:, :, None, None], sin[:, :, None, None])
        msg = attend_both(
            qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2], m, mask0, mask1, False
        )
        return self.update(x, msg, self.out_proj)


class CrossBlock(FoldedUpdate):
    """Bidirectional cross-attention: one shared q/k projection, messages both ways."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.heads = num_heads
        self.to_qk = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.ffn = _ffn(dim)
        self._qkv = CachedDerived(concat_rows)

    def forward(self, x, m: int, mask0=None, mask1=None):
        b, t, _ = x.shape
        w, bias = self._qkv(
            self.to_qk.weight, self.to_qk.bias, self.to_v.weight, self.to_v.bias
        )
        qkv = F.linear(x, w, bias).view(b, t, 2, self.heads, -1)
        qk, v = qkv[:, :, 0], qkv[:, :, 1]
        msg = attend_both(qk, qk, v, m, mask0, mask1, True)
        return self.update(x, msg, self.to_out)


class TransformerLayer(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.self_attn = SelfBlock(dim, num_heads)
        self.cross_attn = CrossBlock(dim, num_heads)

    def forward(self, x, cos, sin, m: int, mask0=None, mask1=None):
        """x (B, M+N, D): the points of image 0 then those of image 1."""
        x = self.self_attn(x, cos, sin, m, mask0, mask1)
        return self.cross_attn(x, m, mask0, mask1)


class TokenConfidence(nn.Module):
    """Per-point probability that its assignment will not change in later layers.

    Reads *detached* features, so its training never affects the matcher.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.token = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.token[0](x.detach()).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.token(x.detach()).squeeze(-1)


class MatchAssignment(nn.Module):
    """Log-assignment (B, M+1, N+1) from dual-softmax similarity and matchability."""

    def __init__(self, dim: int):
        super().__init__()
        self.matchability = nn.Linear(dim, 1)
        self.final_proj = nn.Linear(dim, dim)

    def project(self, x0, x1):
        """Matching descriptors m0 (B, M, D), m1 (B, N, D), scaled so that the
        similarity is m0 @ m1^T, and matchability logits z0 (B, M, 1), z1 (B, N, 1)."""
        d = x0.shape[-1]
        m0, m1 = self.final_proj(x0) / d**0.25, self.final_proj(x1) / d**0.25
        return m0, m1, self.matchability(x0), self.matchability(x1)

    def forward(self, x0, x1, valid0=None, valid1=None) -> torch.Tensor:
        m0, m1, z0, z1 = self.project(x0, x1)
        return log_double_softmax(m0 @ m1.transpose(-1, -2), z0, z1, valid0, valid1)


def log_double_softmax(sim, z0, z1, valid0=None, valid1=None) -> torch.Tensor:
    """P = sigma(z0) sigma(z1) softmax_row(S) softmax_col(S), dustbins log sigma(-z).

    Padded entries (``valid`` False) are left out of the softmaxes; their inner entries
    are -inf and their dustbin entries 0 (certainly unmatched).
    """
    b, m, n = sim.shape
    if sim.dtype in (torch.float16, torch.bfloat16):  # softmaxes in float32 (autocast)
        sim, z0, z1 = sim.float(), z0.float(), z1.float()
    if valid0 is None and valid1 is None:
        inner = sim.log_softmax(2) + sim.log_softmax(1)
    else:
        v0 = valid0 if valid0 is not None else sim.new_ones(b, m, dtype=torch.bool)
        v1 = valid1 if valid1 is not None else sim.new_ones(b, n, dtype=torch.bool)
        # an image without points: keep its softmax finite, its entries are masked below
        s0 = sim.masked_fill(~(v1 | ~v1.any(-1, keepdim=True))[:, None, :], -torch.inf)
        s1 = sim.masked_fill(~(v0 | ~v0.any(-1, keepdim=True))[:, :, None], -torch.inf)
        inner = s0.log_softmax(2) + s1.log_softmax(1)
    inner = inner + F.logsigmoid(z0) + F.logsigmoid(z1).transpose(1, 2)
    dust0, dust1 = F.logsigmoid(-z0).squeeze(-1), F.logsigmoid(-z1).squeeze(-1)
    if valid0 is not None or valid1 is not None:
        pair = v0[:, :, None] & v1[:, None, :]
        inner = inner.masked_fill(~pair, -torch.inf)
        dust0, dust1 = dust0.masked_fill(~v0, 0.0), dust1.masked_fill(~v1, 0.0)
    top = torch.cat([inner, dust0[..., None]], 2)
    bottom = torch.cat([dust1, dust1.new_zeros(b, 1)], 1)[:, None]
    return torch.cat([top, bottom], 1)


def filter_matches(la: torch.Tensor, threshold: float, valid0=None, valid1=None):
    """Mutual argmax of the inner log-assignment with score exp(max) > threshold.

    Returns matches0 (B, M), matches1 (B, N) (-1 = unmatched), scores0, scores1.
    Padded points (``valid`` False) are never matched.
    """
    inner = la[:, :-1, :-1]
    max0, max1 = inner.max(2), inner.max(1)
    m0, m1 = max0.indices, max1.indices
    ar0 = torch.arange(m0.shape[1], device=la.device)[None]
    ar1 = torch.arange(m1.shape[1], device=la.device)[None]
    mutual0 = ar0 == m1.gather(1, m0)
    mutual1 = ar1 == m0.gather(1, m1)
    if valid0 is not None:
        mutual0 = mutual0 & valid0
        mutual1 = mutual1 & valid0.gather(1, m1)
    if valid1 is not None:
        mutual1 = mutual1 & valid1
        mutual0 = mutual0 & valid1.gather(1, m0)
    zero = la.new_zeros(())
    scores0 = torch.where(mutual0, max0.values.exp(), zero)
    scores1 = torch.where(mutual1, scores0.gather(1, m1), zero)
    ok0 = mutual0 & (scores0 > threshold)
    ok1 = mutual1 & ok0.gather(1, m1)
    return torch.where(ok0, m0, -1), torch.where(ok1, m1, -1), scores0, scores1
