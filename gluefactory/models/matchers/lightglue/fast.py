"""The speed machinery of LightGlue, in one place.

Nothing here changes what the model computes (parity with the reference is tested in
float64 to 1e-9); it changes how:

- **Cached derived weights** (:class:`CachedDerived`): at inference the fused q/k/v
  projection of self-attention (rows permuted), the concatenated q/k + v projection of
  cross-attention and the folded out-projection are computed once from the official
  parameters and reused until a parameter changes (optimiser step, ``load_state_dict``,
  ``.to()``). With autograd on they are recomputed every call, so gradients flow to
  the official parameters.
- **Rotary pairs in halves** (:func:`rotary_half_permutation`, :func:`rotate_halves`):
  the official weights rotate adjacent feature pairs (2j, 2j + 1); permuting the rows
  of the q/k projection pairs j with j + d/2 instead, which gives the same q.k and
  rotates with two contiguous slices (written in place of one new buffer).
- **Folded out-projection** (:class:`FoldedUpdate`): the update MLP's first layer reads
  [x | W_out a + b_out]; it is evaluated as W1x x + (W1m W_out) a + (W1m b_out + b1):
  one matmul less per token and no concatenation.
- **Both images in one call** (:func:`attend_both`): the tokens of the two images sit
  in one tensor (image 0 first), so every projection is one matmul for both; attention
  runs as two fused ``scaled_dot_product_attention`` calls (never an explicit M x N
  similarity per head).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def inplace_ok(t: torch.Tensor) -> bool:
    """Whether buffers may be updated in place: no autograd and no autocast."""
    if torch.is_grad_enabled():
        return False
    try:
        return not torch.is_autocast_enabled(t.device.type)
    except TypeError:  # torch < 2.4: no per-device query
        return not (torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled())


def widen(t: torch.Tensor) -> torch.Tensor:
    """Half-precision results (autocast) are returned in float32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


class CachedDerived:
    """Derived weights (permuted / concatenated / folded) cached while no grad is recorded.

    Valid while every source parameter still has the same storage (held here, so its
    address cannot be reused) and version counter: in-place updates (optimiser steps,
    ``load_state_dict``) and ``.to()`` / ``.half()`` invalidate it.
    """

    def __init__(self, fn):
        self.fn, self.sources, self.versions, self.value = fn, (), (), None

    def __call__(self, *params):
        if torch.is_grad_enabled():
            return self.fn(*params)
        versions = tuple(p._version for p in params)
        same = len(self.sources) == len(params) and all(
            s.data_ptr() == p.data_ptr() and s.dtype == p.dtype and s.device == p.device
            for s, p in zip(self.sources, params)
        )
        if not same or versions != self.versions:
            self.sources = tuple(p.detach() for p in params)
            self.versions, self.value = versions, self.fn(*params)
        return self.value


def permute_rows(w, b, perm):
    return w[perm], b[perm]


def concat_rows(w1, b1, w2, b2):
    return torch.cat([w1, w2]), torch.cat([b1, b2])


def fold_out_proj(w_out, b_out, w1, b1):
    """W1 [x | W_out a + b_out] + b1 = W1x x + (W1m W_out) a + (W1m b_out + b1)."""
    d = w_out.shape[0]
    w1m = w1[:, d:]
    return w1[:, :d], w1m @ w_out, b1 + w1m @ b_out  # (addmv: no ONNX export)


def rotary_half_permutation(num_heads: int, head_dim: int) -> torch.Tensor:
    """Row order of the official ``Wqkv`` (row = head, feature, {q, k, v}) that gives
    [q | k | v] with heads contiguous and the q/k rotary pairs split in halves."""
    half = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    rows = []
    for c in range(3):
        order = half if c < 2 else torch.arange(head_dim)
        for h in range(num_heads):
            rows.append(h * head_dim * 3 + order * 3 + c)
    return torch.cat(rows)


def rotate_halves(
    t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Rotate the feature pairs (j, j + d/2) of ``t`` (..., d) by angles with cos/sin (..., d/2).

    Without autograd the result is written in place of one new buffer (no temporaries).
    """
    h = t.shape[-1] // 2
    t1, t2 = t[..., :h], t[..., h:]
    if not inplace_ok(t):
        return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], -1)
    out = torch.empty(t.shape, dtype=torch.result_type(t, cos), device=t.device)
    o1, o2 = out[..., :h], out[..., h:]
    torch.mul(t1, cos, out=o1)
    o1.addcmul_(t2, sin, value=-1)
    torch.mul(t2, cos, out=o2)
    o2.addcmul_(t1, sin)
    return out


def _heads(t: torch.Tensor) -> torch.Tensor:
    """(B, T, H, d) -> (B, H, T, d) view."""
    return t.transpose(1, 2)


def attend_both(q, k, v, m: int, mask0, mask1, cross: bool) -> torch.Tensor:
    """Messages (B, T, H*d) for tokens q/k/v (B, T, H, d): image 0 = first m tokens.

    Self-attention: each image attends to itself; cross: to the other image. Masks are
    (B, 1, 1, keys) booleans (True = attend) of image 0's / image 1's keys, or None.
    """
    q0, q1, k0, k1, v0, v1 = (
        _heads(t) for t in (q[:, :m], q[:, m:], k[:, :m], k[:, m:], v[:, :m], v[:, m:])
    )
    if cross:
        k0, k1, v0, v1, mask0, mask1 = k1, k0, v1, v0, mask1, mask0
    msg0 = F.scaled_dot_product_attention(q0, k0, v0, attn_mask=mask0)
    msg1 = F.scaled_dot_product_attention(q1, k1, v1, attn_mask=mask1)
    return torch.cat([_heads(msg0), _heads(msg1)], 1).flatten(-2)


class FoldedUpdate(nn.Module):
    """x + MLP([x | out_proj(attention)]), with out_proj folded into the MLP's first layer.

    Subclasses own ``ffn`` (Linear, LayerNorm, GELU, Linear: the official names) and
    call :meth:`update` with their out-projection.
    """

    ffn: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self._folded = CachedDerived(fold_out_proj)

    def update(
        self, x: torch.Tensor, attn: torch.Tensor, out: nn.Linear
    ) -> torch.Tensor:
        lin1, norm, _, lin2 = self.ffn
        w1x, wc, bc = self._folded(out.weight, out.bias, lin1.weight, lin1.bias)
        shape = x.shape
        x2, a2 = x.reshape(-1, shape[-1]), attn.reshape(-1, attn.shape[-1])
        inplace = inplace_ok(x)
        if inplace:
            h = torch.addmm(bc, a2, wc.t()).addmm_(x2, w1x.t())
        else:
            h = torch.addmm(bc, a2, wc.t()) + x2 @ w1x.t()
        h = F.gelu(
            F.layer_norm(h, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        )
        y = torch.addmm(lin2.bias, h, lin2.weight.t())
        y = y.add_(x2) if inplace and y.dtype == x2.dtype else y + x2
        return y.view(shape)


__all__ = [
    "CachedDerived",
    "FoldedUpdate",
    "attend_both",
    "concat_rows",
    "fold_out_proj",
    "inplace_ok",
    "permute_rows",
    "rotary_half_permutation",
    "rotate_halves",
    "widen",
]
