"""LightGlue: local feature matching at light speed (Lindenberger et al., ICCV 2023).

One model for training and for inference (official weights included). Architecture:

- keypoints normalised by the image size, optionally with SIFT scale and orientation,
  go through a learnable Fourier encoding used as a *rotary* embedding in self-attention;
- descriptors are projected to ``descriptor_dim`` and refined by ``n_layers`` layers of
  (self-attention, bidirectional cross-attention), each followed by an MLP update;
- every layer has an assignment head (dual-softmax similarity + matchability) and, but
  the last, a token-confidence head used at inference for early exit (``depth_confidence``)
  and point pruning (``width_confidence``).

Batches: pairs may have different keypoint counts, padded and flagged with
``keypoint_mask{0,1}`` (True = real point). Padded points are masked keys in every
attention and excluded from the assignment softmaxes, early exit is decided per pair (an
exited pair leaves the batch with the outputs of its exit layer) and pruning removes the
points of each pair (the rest of the batch is re-packed), so every pair of a batch gets
the matches it gets alone.

Keypoints are in the library convention (:mod:`gluefactory.geometry.coordinates`) and
normalised as (k - size / 2) / (max(size) / 2), size = (w, h) of ``view{i}.image_size``.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...utils.conf import ConfigError
from ..base_model import BaseModel, load_state_dict_strict
from ..utils.losses import confidence_loss, nll_weights, weighted_nll
from ..utils.metrics import matcher_metrics

#: architecture and official weights of each supported feature type
FEATURES: dict[str, dict] = {
    "superpoint": {"input_dim": 256, "weights": "superpoint-lightglue"},
    "disk": {"input_dim": 128, "weights": "disk-lightglue"},
    "aliked": {"input_dim": 128, "weights": "aliked-lightglue"},
    "sift": {"input_dim": 128, "add_scale_ori": True, "weights": "sift-lightglue"},
    "doghardnet": {
        "input_dim": 128,
        "add_scale_ori": True,
        "weights": "doghardnet-lightglue",
    },
    "xfeat": {  # LighterGlue (XFeat): same model, smaller
        "input_dim": 64,
        "descriptor_dim": 96,
        "n_layers": 6,
        "num_heads": 1,
        "weights": "xfeat-lighterglue",
    },
}
ARCH_KEYS = ("input_dim", "descriptor_dim", "n_layers", "num_heads", "add_scale_ori")


# --------------------------------------------------------------------------- utilities


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


def apply_rotary(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the feature pairs (j, j + d/2) of ``t`` (..., d) by angles with cos/sin (..., d/2).

    The official weights pair adjacent features (2j, 2j + 1); :class:`SelfBlock` permutes
    its q/k projections so that pairs are split in halves instead (cheaper, same q.k).
    Without autograd the result is written in place of a new buffer (no temporaries).
    """
    h = t.shape[-1] // 2
    t1, t2 = t[..., :h], t[..., h:]
    if not _inplace_ok(t):
        return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], -1)
    out = torch.empty(t.shape, dtype=torch.result_type(t, cos), device=t.device)
    o1, o2 = out[..., :h], out[..., h:]
    torch.mul(t1, cos, out=o1)
    o1.addcmul_(t2, sin, value=-1)
    torch.mul(t2, cos, out=o2)
    o2.addcmul_(t1, sin)
    return out


def _inplace_ok(t: torch.Tensor) -> bool:
    """Whether buffers may be updated in place: no autograd and no autocast."""
    if torch.is_grad_enabled():
        return False
    try:
        return not torch.is_autocast_enabled(t.device.type)
    except TypeError:  # torch < 2.4: no per-device query
        return not (torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled())


def _widen(t: torch.Tensor) -> torch.Tensor:
    """Half-precision results (autocast) are returned in float32."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def _key_mask(valid: torch.Tensor | None) -> torch.Tensor | None:
    """(B, N) real-key mask -> (B, 1, 1, N) SDPA mask; an empty set attends to all (no NaN)."""
    if valid is None:
        return None
    valid = valid | ~valid.any(-1, keepdim=True)
    return valid[:, None, None, :]


def _heads(t: torch.Tensor) -> torch.Tensor:
    """(B, T, H, d) -> (B, H, T, d) view."""
    return t.transpose(1, 2)


def _attend_both(q, k, v, m: int, mask0, mask1, cross: bool) -> torch.Tensor:
    """Messages (B, T, H*d) for tokens q/k/v (B, T, H, d): image 0 = first m tokens.

    Self-attention: each image attends to itself; cross: to the other image.
    """
    q0, q1, k0, k1, v0, v1 = (
        _heads(t) for t in (q[:, :m], q[:, m:], k[:, :m], k[:, m:], v[:, :m], v[:, m:])
    )
    if cross:
        k0, k1, v0, v1, mask0, mask1 = k1, k0, v1, v0, mask1, mask0
    msg0 = F.scaled_dot_product_attention(q0, k0, v0, attn_mask=mask0)
    msg1 = F.scaled_dot_product_attention(q1, k1, v1, attn_mask=mask1)
    msg = torch.cat([_heads(msg0), _heads(msg1)], 1)
    return msg.flatten(-2)


class _Cached:
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


def _permute_rows(w, b, perm):
    return w[perm], b[perm]


def _concat_rows(w1, b1, w2, b2):
    return torch.cat([w1, w2]), torch.cat([b1, b2])


def _fold_out_proj(w_out, b_out, w1, b1):
    """W1 [x | W_out a + b_out] + b1 = W1x x + (W1m W_out) a + (W1m b_out + b1)."""
    d = w_out.shape[0]
    w1m = w1[:, d:]
    return w1[:, :d], w1m @ w_out, torch.addmv(b1, w1m, b_out)


def _ffn(dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(2 * dim, 2 * dim),
        nn.LayerNorm(2 * dim, elementwise_affine=True),
        nn.GELU(),
        nn.Linear(2 * dim, dim),
    )


class _Update(nn.Module):
    """x + MLP([x | out_proj(attention)]), with out_proj folded into the MLP's first layer.

    Parameters keep the official names (``out``, ``ffn.0/1/3``) but the product
    W1 [x | W_out a] is evaluated as W1x x + (W1m W_out) a: one matmul less per token and
    no concatenation.
    """

    def _update(
        self, x: torch.Tensor, attn: torch.Tensor, out: nn.Linear
    ) -> torch.Tensor:
        lin1, norm, _, lin2 = self.ffn
        w1x, wc, bc = self._folded(out.weight, out.bias, lin1.weight, lin1.bias)
        shape = x.shape
        x2, a2 = x.reshape(-1, shape[-1]), attn.reshape(-1, attn.shape[-1])
        inplace = _inplace_ok(x)
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


# ------------------------------------------------------------------------------ layers


class LearnableFourierPositionalEncoding(nn.Module):
    """Keypoints (B, N, M) -> (cos, sin) of learnt projections, each (B, N, head_dim/2)."""

    def __init__(self, in_dim: int, head_dim: int, gamma: float = 1.0):
        super().__init__()
        self.Wr = nn.Linear(in_dim, head_dim // 2, bias=False)
        nn.init.normal_(self.Wr.weight.data, mean=0.0, std=gamma**-2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        proj = self.Wr(x)
        return proj.cos(), proj.sin()


class SelfBlock(_Update):
    """Self-attention with rotary encoding on both images at once, then the MLP update.

    ``Wqkv`` keeps the official layout (output index = head, feature, {q,k,v}); the
    forward uses a row permutation of it: [q | k | v], heads contiguous, and q/k rotary
    pairs split in halves.
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads or (dim // num_heads) % 2:
            raise ConfigError(
                f"descriptor_dim {dim} must be a multiple of 2 * num_heads ({num_heads})."
            )
        self.num_heads = num_heads
        self.Wqkv = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.ffn = _ffn(dim)
        hd = dim // num_heads
        half = torch.cat([torch.arange(0, hd, 2), torch.arange(1, hd, 2)])
        rows = []
        for c in range(3):
            order = half if c < 2 else torch.arange(hd)
            for h in range(num_heads):
                rows.append(h * hd * 3 + order * 3 + c)
        self.register_buffer("perm", torch.cat(rows), persistent=False)
        self._fused = _Cached(_permute_rows)
        self._folded = _Cached(_fold_out_proj)

    def forward(self, x, cos, sin, m: int, mask0=None, mask1=None):
        b, t, _ = x.shape
        w, bias = self._fused(self.Wqkv.weight, self.Wqkv.bias, self.perm)
        qkv = F.linear(x, w, bias).view(b, t, 3, self.num_heads, -1)
        qk = apply_rotary(qkv[:, :, :2], cos[:, :, None, None], sin[:, :, None, None])
        msg = _attend_both(
            qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2], m, mask0, mask1, False
        )
        return self._update(x, msg, self.out_proj)


class CrossBlock(_Update):
    """Bidirectional cross-attention: one shared q/k projection, messages both ways."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.heads = num_heads
        self.to_qk = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.to_out = nn.Linear(dim, dim)
        self.ffn = _ffn(dim)
        self._fused = _Cached(_concat_rows)
        self._folded = _Cached(_fold_out_proj)

    def forward(self, x, m: int, mask0=None, mask1=None):
        b, t, _ = x.shape
        w, bias = self._fused(
            self.to_qk.weight, self.to_qk.bias, self.to_v.weight, self.to_v.bias
        )
        qkv = F.linear(x, w, bias).view(b, t, 2, self.heads, -1)
        qk, v = qkv[:, :, 0], qkv[:, :, 1]
        msg = _attend_both(qk, qk, v, m, mask0, mask1, True)
        return self._update(x, msg, self.to_out)


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

    def forward(self, x0, x1, valid0=None, valid1=None) -> torch.Tensor:
        d = x0.shape[-1]
        m0, m1 = self.final_proj(x0) / d**0.25, self.final_proj(x1) / d**0.25
        sim = m0 @ m1.transpose(-1, -2)
        z0, z1 = self.matchability(x0), self.matchability(x1)
        return log_double_softmax(sim, z0, z1, valid0, valid1)


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


def confidence_threshold(layer: int, n_layers: int) -> float:
    """lambda_l = clip(0.8 + 0.1 exp(-4 l / L), 0, 1) (the paper's exit threshold)."""
    return min(max(0.8 + 0.1 * math.exp(-4.0 * layer / n_layers), 0.0), 1.0)


# ------------------------------------------------------------------------------- model


class LightGlue(BaseModel):
    default_conf = {
        "name": "lightglue",
        "input_dim": 256,  # descriptor dimension of the extractor
        "descriptor_dim": 256,
        "add_scale_ori": False,  # SIFT: encode scale (pixels) and orientation (radians)
        "n_layers": 9,
        "num_heads": 4,
        "flash": True,  # kept for config compatibility: attention always uses torch SDPA
        "mp": False,  # autocast: True (fp16 on CUDA, bf16 on CPU), "float16", "bfloat16"
        "depth_confidence": -1,  # early exit (inference only), e.g. 0.95; -1 = off
        "width_confidence": -1,  # point pruning (inference only), e.g. 0.99; -1 = off
        "filter_threshold": 0.1,  # minimum matching score, as the official configs
        "checkpointed": False,  # gradient checkpointing of each layer in training
        "weights": None,  # None | a features name (official file) | a path
        "features": None,  # None | superpoint | disk | aliked | sift | doghardnet | xfeat
        "loss": {"gamma": 1.0, "fn": "nll", "nll_balancing": 0.5},
    }
    required_data_keys = ["keypoints0", "keypoints1", "descriptors0", "descriptors1"]

    def _init(self, conf):
        arch, weights = self._resolve(conf)
        self.arch = arch
        if conf.loss.fn != "nll":
            raise ConfigError(
                f"LightGlue: unknown loss.fn {conf.loss.fn!r} (only 'nll')."
            )
        if conf.add_scale_ori or arch["add_scale_ori"]:
            self.required_data_keys += ["scales0", "scales1", "oris0", "oris1"]
        d, h, n = arch["descriptor_dim"], arch["num_heads"], arch["n_layers"]
        if arch["input_dim"] != d:
            self.input_proj = nn.Linear(arch["input_dim"], d)
        else:
            self.input_proj = nn.Identity()
        self.posenc = LearnableFourierPositionalEncoding(
            2 + 2 * arch["add_scale_ori"], d // h
        )
        self.transformers = nn.ModuleList([TransformerLayer(d, h) for _ in range(n)])
        self.log_assignment = nn.ModuleList([MatchAssignment(d) for _ in range(n)])
        self.token_confidence = nn.ModuleList(
            [TokenConfidence(d) for _ in range(n - 1)]
        )
        self.thresholds = [confidence_threshold(i, n) for i in range(n)]
        if weights is not None:
            self.load_weights(weights)

    @staticmethod
    def _resolve(conf) -> tuple[dict, str | None]:
        """Architecture and weights from ``features`` / ``weights``.

        A features preset fixes the architecture; an explicit conf value that differs from
        both the default and the preset is an error (never silently overridden).
        """
        default = LightGlue.default_conf
        arch = {k: conf[k] for k in ARCH_KEYS}
        features, weights = conf.features, conf.weights
        if features is not None and features not in FEATURES:
            raise ConfigError(
                f"LightGlue: unknown features {features!r}; known: {', '.join(FEATURES)}."
            )
        if weights in FEATURES:
            if features not in (None, weights):
                raise ConfigError(
                    f"LightGlue: weights {weights!r} do not fit features {features!r}."
                )
            features = weights
        if features is not None:
            preset = FEATURES[features]
            for k in ARCH_KEYS:
                want = preset.get(k, default[k])
                if arch[k] not in (default[k], want):
                    raise ConfigError(
                        f"LightGlue: {k}={arch[k]} contradicts features={features!r} "
                        f"({k}={want})."
                    )
                arch[k] = want
            if weights is None or weights == features:
                weights = preset["weights"]
        return arch, weights

    # ------------------------------------------------------------------ weights

    def load_weights(self, weights: str | Path | Mapping) -> None:
        """Load a registered weights name, a file path or a state dict, strictly.

        Official files load unchanged: legacy DISK names ``self_attn.N`` /
        ``cross_attn.N`` are renamed and its stray ``log_assignment.N.r`` scalars skipped;
        in files with a ``matcher.`` prefix (LighterGlue, training checkpoints) only that
        component is read. Any other missing, unexpected or mis-shaped key is an error.
        """
        if isinstance(weights, Mapping):
            state, source = dict(weights), "(state dict)"
        else:
            from ...weights import load_weights

            state, source = load_weights(str(weights)), str(weights)
        if (
            isinstance(state, Mapping)
            and "model" in state
            and not torch.is_tensor(state["model"])
        ):
            state = state["model"]  # training checkpoint
        if not isinstance(state, Mapping):
            raise ConfigError(f"Weights {source} are not a state dict ({type(state)}).")
        state = dict(state)
        if any(k.startswith("matcher.") for k in state):
            state = {k[8:]: v for k, v in state.items() if k.startswith("matcher.")}
        renamed = {}
        for k, v in state.items():
            k = re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k)
            renamed[k] = v
        n = self.arch["n_layers"]
        ignore = tuple(f"log_assignment.{i}.r" for i in range(n))
        stray = [k for k in ignore if k in renamed and renamed[k].numel() != 1]
        if stray:
            raise ConfigError(
                f"Weights {source}: {stray} are not the known stray scalars."
            )
        load_state_dict_strict(self, renamed, source, ignore=ignore)

    # ------------------------------------------------------------------ forward

    def _autocast_dtype(self, device_type: str):
        mp = self.conf.mp
        if mp in (False, None):
            return None
        if mp is True:
            return torch.float16 if device_type == "cuda" else torch.bfloat16
        dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16}
        if mp not in dtypes:
            raise ConfigError(
                f"LightGlue: mp must be a bool, float16 or bfloat16, not {mp!r}."
            )
        return dtypes[mp]

    def _mp(self, device_type: str):
        """The autocast context of ``mp`` (a no-op context when off)."""
        dtype = self._autocast_dtype(device_type)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=dtype)

    def _forward(self, data: dict) -> dict:
        with self._mp(data["keypoints0"].device.type):
            return self._match(data)

    def _inputs(self, data: dict, i: int):
        kpts, desc = data[f"keypoints{i}"], data[f"descriptors{i}"]
        if kpts.dim() != 3 or kpts.shape[-1] != 2:
            raise ValueError(
                f"keypoints{i} must be (B, N, 2), got {tuple(kpts.shape)}."
            )
        if desc.shape[:2] != kpts.shape[:2] or desc.shape[-1] != self.arch["input_dim"]:
            raise ValueError(
                f"descriptors{i} must be (B, N, {self.arch['input_dim']}) for keypoints{i} "
                f"{tuple(kpts.shape)}, got {tuple(desc.shape)}."
            )
        valid = data.get(f"keypoint_mask{i}")
        if valid is not None:
            valid = valid.bool()
            if valid.shape != kpts.shape[:2]:
                raise ValueError(
                    f"keypoint_mask{i} must be {tuple(kpts.shape[:2])}, "
                    f"got {tuple(valid.shape)}."
                )
        view = data.get(f"view{i}")
        size = view.get("image_size") if isinstance(view, Mapping) else None
        kn = normalize_keypoints(
            kpts if kpts.dtype == torch.float64 else kpts.float(), size, valid
        )
        if self.arch["add_scale_ori"]:
            extra = [data[f"scales{i}"], data[f"oris{i}"]]
            kn = torch.cat([kn] + [e.to(kn)[..., None] for e in extra], -1)
        return kn, desc, valid

    def _match(self, data: dict) -> dict:
        kn0, desc0, valid0 = self._inputs(data, 0)
        kn1, desc1, valid1 = self._inputs(data, 1)
        b, m, n = kn0.shape[0], kn0.shape[1], kn1.shape[1]
        if desc1.shape[0] != b:
            raise ValueError(f"Batch sizes differ: {b} vs {desc1.shape[0]}.")
        dev = kn0.device
        counts0 = (
            valid0.sum(-1) if valid0 is not None else torch.full((b,), m, device=dev)
        )
        counts1 = (
            valid1.sum(-1) if valid1 is not None else torch.full((b,), n, device=dev)
        )
        valid0 = None if valid0 is not None and bool(valid0.all()) else valid0
        valid1 = None if valid1 is not None and bool(valid1.all()) else valid1
        num_points = counts0 + counts1
        res = _Results(b, m, n, num_points)
        state = _State(torch.arange(b, device=dev), None, None, valid0, valid1, m, n)
        if m == 0 or n == 0:
            return res.output()

        L = self.arch["n_layers"]
        early = not self.training and self.conf.depth_confidence > 0
        prune = not self.training and self.conf.width_confidence > 0
        adaptive = early or prune
        checkpointed = (
            self.conf.checkpointed and self.training and torch.is_grad_enabled()
        )

        x = self.input_proj(torch.cat([desc0, desc1], 1))
        cos, sin = self.posenc(torch.cat([kn0, kn1], 1).to(self.posenc.Wr.weight.dtype))
        num_points = num_points.clamp(min=1)

        def drop_pairs(gone, x, cos, sin, num_points, state):
            keep = ~gone
            return x[keep], cos[keep], sin[keep], num_points[keep], state.subset(keep)

        if adaptive:  # a pair without points in one image runs no layer
            gone = state.empty_pairs()
            if gone is not None:
                res.stopped(state.rows[gone], 0)
                if bool(gone.all()):
                    return res.output()
                x, cos, sin, num_points, state = drop_pairs(
                    gone, x, cos, sin, num_points, state
                )

        layers_x = []
        for i in range(L):
            mask0, mask1 = _key_mask(state.valid0), _key_mask(state.valid1)
            layer = self.transformers[i]
            if checkpointed:
                x = checkpoint(
                    layer, x, cos, sin, state.m, mask0, mask1, use_reentrant=False
                )
            else:
                x = layer(x, cos, sin, state.m, mask0, mask1)
            if not adaptive:
                layers_x.append(x)
                continue
            if i == L - 1:
                break
            conf = None
            if early:
                conf = self.token_confidence[i](x).float()
                unsure = conf < self.thresholds[i]
                valid = state.valid
                if valid is not None:
                    unsure = unsure & valid
                exit_ = (1.0 - unsure.sum(-1) / num_points) > self.conf.depth_confidence
                if bool(exit_.any()):
                    self._finish(res, state.subset(exit_), x[exit_], i)
                    if bool(exit_.all()):
                        return res.output()
                    conf = conf[~exit_]
                    x, cos, sin, num_points, state = drop_pairs(
                        exit_, x, cos, sin, num_points, state
                    )
            if prune:
                z = self.log_assignment[i].matchability(x).squeeze(-1).float().sigmoid()
                keep = z > (1 - self.conf.width_confidence)
                if conf is not None:  # unconfident points are never pruned
                    keep = keep | (conf <= self.thresholds[i])
                (x, cos, sin, new_state), dropped = state.prune(keep, x, cos, sin)
                res.pruned(state, dropped, i + 1)
                state = new_state
                gone = state.empty_pairs()
                if gone is not None:
                    res.stopped(state.rows[gone], i + 1)
                    if bool(gone.all()):
                        return res.output()
                    x, cos, sin, num_points, state = drop_pairs(
                        gone, x, cos, sin, num_points, state
                    )
        self._finish(res, state, x, L - 1)
        out = res.output()
        if layers_x:
            xs = torch.stack(layers_x, 1)
            out["ref_descriptors0"], out["ref_descriptors1"] = (
                xs[:, :, :m],
                xs[:, :, m:],
            )
        return out

    def _finish(self, res: _Results, state: _State, x: torch.Tensor, i: int) -> None:
        """Assignment and matches at layer ``i`` for the pairs of ``state`` (tokens x)."""
        la = self.log_assignment[i](
            x[:, : state.m], x[:, state.m :], state.valid0, state.valid1
        )
        m0, m1, sc0, sc1 = filter_matches(
            la, self.conf.filter_threshold, state.valid0, state.valid1
        )
        res.finish(state, la, m0, m1, sc0, sc1, i + 1)

    # ------------------------------------------------------------------ loss

    def loss(self, pred: dict, data: dict) -> tuple[dict, dict]:
        """Deep-supervised balanced NLL (+ token-confidence BCE in training); see docs."""
        if "ref_descriptors0" not in pred:
            raise KeyError(
                "LightGlue.loss needs ref_descriptors0/1 of all layers: run the model "
                "without early exit and pruning (depth/width_confidence -1, or train mode)."
            )
        lconf = self.conf.loss
        valid0, valid1 = data.get("keypoint_mask0"), data.get("keypoint_mask1")
        valid0 = None if valid0 is None else valid0.bool()
        valid1 = None if valid1 is None else valid1.bool()
        la_final = pred["log_assignment"]
        weights = nll_weights(la_final, data)
        nll, parts = weighted_nll(la_final, weights, lconf.nll_balancing)
        losses = {"total": nll, "last": nll.detach().clone(), **parts}
        L = pred["ref_descriptors0"].shape[1]
        sum_w = 1.0
        conf_loss = torch.zeros_like(nll)
        for i in range(L - 1):
            d0, d1 = pred["ref_descriptors0"][:, i], pred["ref_descriptors1"][:, i]
            with self._mp(d0.device.type):
                la = self.log_assignment[i](d0, d1, valid0, valid1)
            nll_i, _ = weighted_nll(la, weights, lconf.nll_balancing)
            w = lconf.gamma ** (L - i - 1) if lconf.gamma > 0 else i + 1
            losses["total"] = losses["total"] + w * nll_i
            sum_w += w
            token = self.token_confidence[i]
            with self._mp(d0.device.type):
                logits0, logits1 = token.logits(d0).float(), token.logits(d1).float()
            conf_loss = conf_loss + confidence_loss(
                logits0,
                logits1,
                la,
                la_final,
                valid0,
                valid1,
            ) / (L - 1)
        losses["total"] = losses["total"] / sum_w
        losses["confidence"] = conf_loss
        if self.training:
            losses["total"] = losses["total"] + conf_loss
        p = la_final.detach()[:, :-1].exp().sum(-1)
        if valid0 is None:
            losses["row_norm"] = p.mean(-1)
        else:
            losses["row_norm"] = (p * valid0).sum(-1) / valid0.sum(-1).clamp(min=1)
        return losses, matcher_metrics(pred, data)


# --------------------------------------------------------------- inference bookkeeping


class _State:
    """The pairs still running and, per pair, which of their points are still in play.

    ``rows`` (B',): batch index of each running pair. ``ind0`` (B', M'): original index
    of each current slot of image 0 (None: identity). ``valid0`` (B', M'): the slot holds
    a real, unpruned point (None: all do). ``m``, ``n``: current slot counts; the token
    tensor x holds the M' slots of image 0, then the N' slots of image 1.
    """

    def __init__(self, rows, ind0, ind1, valid0, valid1, m: int, n: int):
        self.rows, self.ind0, self.ind1 = rows, ind0, ind1
        self.valid0, self.valid1, self.m, self.n = valid0, valid1, m, n

    def live(self, image: int) -> torch.Tensor:
        """(B', M') mask of the slots of ``image`` that hold a point in play."""
        valid = self.valid0 if image == 0 else self.valid1
        if valid is not None:
            return valid
        size = self.m if image == 0 else self.n
        return torch.ones(
            self.rows.shape[0], size, dtype=torch.bool, device=self.rows.device
        )

    def index(self, image: int) -> torch.Tensor:
        """(B', M') original keypoint index of each slot of ``image``."""
        ind = self.ind0 if image == 0 else self.ind1
        if ind is not None:
            return ind
        size = self.m if image == 0 else self.n
        return torch.arange(size, device=self.rows.device).expand(
            self.rows.shape[0], -1
        )

    @property
    def valid(self) -> torch.Tensor | None:
        """(B', M'+N') mask of the slots in play, or None when all are."""
        if self.valid0 is None and self.valid1 is None:
            return None
        return torch.cat([self.live(0), self.live(1)], 1)

    def subset(self, which: torch.Tensor) -> _State:
        pick = lambda t: None if t is None else t[which]  # noqa: E731
        v0, v1 = pick(self.valid0), pick(self.valid1)
        v0 = None if v0 is not None and bool(v0.all()) else v0
        v1 = None if v1 is not None and bool(v1.all()) else v1
        return _State(
            self.rows[which], pick(self.ind0), pick(self.ind1), v0, v1, self.m, self.n
        )

    def prune(self, keep: torch.Tensor, x, cos, sin):
        """Keep the points ``keep`` (B', M'+N'), packed to the front of each image's slots.

        Returns the new (x, cos, sin, state) and the dropped masks of both images.
        """
        m = self.m
        valid = self.valid
        if valid is not None:
            keep = keep & valid
        keep0, keep1 = keep[:, :m], keep[:, m:]
        dropped = (self.live(0) & ~keep0, self.live(1) & ~keep1)
        x0, c0, s0, ind0, v0 = _pack(keep0, x[:, :m], cos[:, :m], sin[:, :m], self.ind0)
        x1, c1, s1, ind1, v1 = _pack(keep1, x[:, m:], cos[:, m:], sin[:, m:], self.ind1)
        state = _State(self.rows, ind0, ind1, v0, v1, x0.shape[1], x1.shape[1])
        x = torch.cat([x0, x1], 1)
        return (x, torch.cat([c0, c1], 1), torch.cat([s0, s1], 1), state), dropped

    def empty_pairs(self) -> torch.Tensor | None:
        """(B',) pairs with no point left in one of the images, or None if there is none."""
        gone = ~(self.live(0).any(-1) & self.live(1).any(-1))
        return gone if bool(gone.any()) else None


def _pack(keep, x, cos, sin, ind):
    """Move the kept points of each pair to the front (same order), pad to the largest count."""
    if bool(keep.all()):
        return x, cos, sin, ind, None
    new_t = int(keep.sum(-1).max())
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :new_t]
    ind = order if ind is None else ind.gather(1, order)
    valid = keep.gather(1, order)
    valid = None if bool(valid.all()) else valid
    gather = lambda t: t.gather(1, order[..., None].expand(-1, -1, t.shape[-1]))  # noqa: E731
    return gather(x), gather(cos), gather(sin), ind, valid


def _scatter_rows(dst, rows, ind, live, values, size: int) -> None:
    """dst[rows[k], ind[k, j]] = values[k, j] where live[k, j] (dst is (B, size))."""
    tmp = dst[rows]
    tmp = torch.cat([tmp, tmp.new_zeros(tmp.shape[0], 1)], 1)  # slot ``size``: discard
    tmp.scatter_(1, torch.where(live, ind, size), values.to(dst.dtype))
    dst[rows] = tmp[:, :size]


class _Results:
    """Outputs of the batch, filled as its pairs finish (possibly at different layers)."""

    def __init__(self, b: int, m: int, n: int, num_points: torch.Tensor):
        self.b, self.m, self.n = b, m, n
        dev = num_points.device
        self.num_points = num_points
        self.parts = []  # (state, log_assignment, m0, m1, scores0, scores1)
        self.prune = [
            torch.zeros(b, m, dtype=torch.long, device=dev),
            torch.zeros(b, n, dtype=torch.long, device=dev),
        ]
        self.stop = torch.zeros(b, dtype=torch.long, device=dev)
        self.num_pruned = torch.zeros(b, dtype=torch.long, device=dev)

    def pruned(self, state: _State, dropped, layers: int) -> None:
        """Points ``dropped`` ((B', M'), (B', N')) left after ``layers`` layers."""
        for image, drop in enumerate(dropped):
            if bool(drop.any()):
                size = self.m if image == 0 else self.n
                _scatter_rows(
                    self.prune[image],
                    state.rows,
                    state.index(image),
                    drop,
                    torch.full_like(drop, layers, dtype=torch.long),
                    size,
                )
                self.num_pruned.index_add_(0, state.rows, drop.sum(-1))

    def stopped(self, rows: torch.Tensor, layers: int) -> None:
        """Pairs ``rows`` end after ``layers`` layers without any match (no points)."""
        self.stop[rows] = layers

    def finish(self, state: _State, la, m0, m1, sc0, sc1, layers: int) -> None:
        self.parts.append((state, la, m0, m1, sc0, sc1))
        self.stop[state.rows] = layers
        for image in (0, 1):
            live = state.live(image)
            size = self.m if image == 0 else self.n
            _scatter_rows(
                self.prune[image],
                state.rows,
                state.index(image),
                live,
                torch.full_like(live, layers, dtype=torch.long),
                size,
            )

    def whole(self) -> bool:
        """A single part covers the whole batch with every slot in place (no pruning)."""
        if len(self.parts) != 1:
            return False
        s = self.parts[0][0]
        return s.rows.shape[0] == self.b and s.ind0 is None and s.ind1 is None

    def output(self) -> dict:
        if self.whole():
            _, la, m0, m1, sc0, sc1 = self.parts[0]
        else:
            la, m0, m1, sc0, sc1 = self._assemble()
        return {
            "matches0": m0,
            "matches1": m1,
            "matching_scores0": _widen(sc0),
            "matching_scores1": _widen(sc1),
            "log_assignment": la,
            "stop": self.stop,
            "prune0": self.prune[0],
            "prune1": self.prune[1],
            "pruned_fraction": self.num_pruned.float() / self.num_points.clamp(min=1),
        }

    def _assemble(self):
        """Scatter the parts into (B, M+1, N+1) / (B, M) / (B, N) tensors.

        Pruned and padded points: log-assignment -inf to every point and 0 to the dustbin,
        no match, score 0.
        """
        b, m, n = self.b, self.m, self.n
        dev = self.stop.device
        dtype = self.parts[0][1].dtype if self.parts else torch.float32
        la_full = torch.full((b, m + 2, n + 2), -torch.inf, dtype=dtype, device=dev)
        la_full[:, :, n] = 0.0
        la_full[:, m, :] = 0.0
        m0f = torch.full((b, m), -1, dtype=torch.long, device=dev)
        m1f = torch.full((b, n), -1, dtype=torch.long, device=dev)
        sdtype = _widen(self.parts[0][4]).dtype if self.parts else torch.float32
        s0f = torch.zeros((b, m), dtype=sdtype, device=dev)
        s1f = torch.zeros((b, n), dtype=sdtype, device=dev)
        for s, la, m0, m1, sc0, sc1 in self.parts:
            k = s.rows.shape[0]
            ind0, ind1, live0, live1 = s.index(0), s.index(1), s.live(0), s.live(1)
            r = torch.cat(
                [torch.where(live0, ind0, m + 1), ind0.new_full((k, 1), m)], 1
            )
            c = torch.cat(
                [torch.where(live1, ind1, n + 1), ind1.new_full((k, 1), n)], 1
            )
            la_full[s.rows[:, None, None], r[:, :, None], c[:, None, :]] = la.to(dtype)
            g0 = torch.where(m0 >= 0, ind1.gather(1, m0.clamp(min=0)), -1)
            g1 = torch.where(m1 >= 0, ind0.gather(1, m1.clamp(min=0)), -1)
            _scatter_rows(m0f, s.rows, ind0, live0, g0, m)
            _scatter_rows(m1f, s.rows, ind1, live1, g1, n)
            _scatter_rows(s0f, s.rows, ind0, live0, sc0, m)
            _scatter_rows(s1f, s.rows, ind1, live1, sc1, n)
        return la_full[:, : m + 1, : n + 1], m0f, m1f, s0f, s1f


__main_model__ = LightGlue
