"""The GlueStick model: points and line endpoints in one graph, matched jointly.

Keypoints (the wireframe's junctions first, then the other points) get a positional
code from (x, y, score); line endpoints get one from (x, y, direction, score). A stack
of self / cross attention layers refines the point descriptors, with a line layer after
every self layer that passes messages along the lines. Points are matched by a dual
softmax with a learnt dustbin; a line's score against another is the mean of its two
endpoint similarities, taking the better of the two endpoint orders, then matched by a
dual softmax with a second dustbin. Training: the balanced NLL of both assignments, plus
line supervision at chosen intermediate layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ....utils.errors import ConfigError, InputError
from ...base_model import BaseModel, load_state_dict_strict
from ...utils.losses import nll_weights, weighted_nll
from ...utils.metrics import matcher_metrics
from ..lightglue.layers import filter_matches, key_mask, normalize_keypoints
from .layers import (
    EndpointEncoder,
    GNNLayer,
    KeypointEncoder,
    LineLayer,
    log_double_softmax,
    pointwise,
)

#: upstream's config value for the official weights -> the weights registry's name
WEIGHT_ALIASES = {"checkpoint_GlueStick_MD": "gluestick-md"}
#: upstream scales normalised coordinates by 0.7 max(w, h) (SuperGlue's), not max / 2
_SUPERGLUE_SCALE = 1.4


class GlueStick(BaseModel):
    """GlueStick point + line matcher (batched; padding is never matched).

    Inputs, per image i in {0, 1}: ``keypoints{i}`` (B, N, 2) pixels, junctions first;
    ``descriptors{i}`` (B, N, input_dim); ``keypoint_scores{i}`` (B, N); ``lines{i}``
    (B, L, 2, 2) endpoints in pixels; ``line_scores{i}`` (B, L); ``lines_junc_idx{i}``
    (B, L, 2) the keypoint index of each endpoint; ``view{i}.image_size`` (B, 2) as
    (w, h) or ``view{i}.image``; optionally ``keypoint_mask{i}`` (B, N) and
    ``line_mask{i}`` (B, L) (True = real; padding last).

    Outputs: ``log_assignment`` (B, N0+1, N1+1), ``matches{i}`` (-1 = none),
    ``matching_scores{i}``; the same for lines with the prefix ``line_``
    (``line_log_assignment``, ``line_matches{i}``, ``line_matching_scores{i}``),
    ``raw_line_scores`` (B, L0, L1), and ``line_{k}_*`` for each intermediate layer k of
    ``inter_supervision``.
    """

    default_conf = {
        "name": "gluestick",
        "input_dim": 256,  # descriptor dimension of the extractor
        "descriptor_dim": 256,
        "weights": None,  # None | "gluestick-md" (official) | a checkpoint path
        "keypoint_encoder": [32, 64, 128, 256],
        "num_heads": 4,
        "GNN_layers": ["self", "cross"] * 9,
        "num_line_iterations": 1,  # line layers after each self layer
        "line_attention": False,  # upstream's unused variant: not supported
        # endpoint scores as upstream (line scores tiled, not per line): the official
        # weights were trained so; "per_line" gives each endpoint its line's score
        "endpoint_scores": "tiled",
        "filter_threshold": 0.2,
        "checkpointed": False,  # gradient checkpointing of each layer in training
        "inter_supervision": None,  # None | layer indices, e.g. [2, 5]
        "loss": {
            "nll_weight": 1.0,
            "nll_balancing": 0.5,
            "inter_supervision": [0.3, 0.6],  # weight of each intermediate layer
        },
    }
    required_data_keys = [
        f"{k}{i}"
        for i in (0, 1)
        for k in (
            "keypoints",
            "descriptors",
            "keypoint_scores",
            "lines",
            "line_scores",
            "lines_junc_idx",
        )
    ]

    @classmethod
    def check_conf(cls, conf) -> None:
        bad = [t for t in conf.GNN_layers if t not in ("self", "cross")]
        if bad:
            raise ConfigError(
                f"matchers.gluestick: GNN_layers entries must be self or cross, got {bad}."
            )
        if conf.line_attention:
            raise ConfigError(
                "matchers.gluestick: line_attention is not supported (upstream's "
                "unreleased variant); use false."
            )
        if conf.endpoint_scores not in ("tiled", "per_line"):
            raise ConfigError(
                "matchers.gluestick: endpoint_scores must be tiled or per_line, got "
                f"{conf.endpoint_scores!r}."
            )
        if conf.descriptor_dim % conf.num_heads:
            raise ConfigError(
                f"matchers.gluestick: descriptor_dim ({conf.descriptor_dim}) must be a "
                f"multiple of num_heads ({conf.num_heads})."
            )
        if conf.inter_supervision:
            n_cross = sum(t == "cross" for t in conf.GNN_layers)
            layers, weights = list(conf.inter_supervision), conf.loss.inter_supervision
            if any(not 0 <= k < n_cross for k in layers) or len(weights) < len(layers):
                raise ConfigError(
                    f"matchers.gluestick: inter_supervision {layers} must be layer "
                    f"indices in [0, {n_cross}) with as many loss.inter_supervision "
                    f"weights (got {list(weights)})."
                )

    def _init(self, conf):
        d = conf.descriptor_dim
        if conf.input_dim != d:
            self.input_proj = nn.Conv1d(conf.input_dim, d, kernel_size=1)
            nn.init.constant_(self.input_proj.bias, 0.0)
        self.kenc = KeypointEncoder(d, conf.keypoint_encoder)
        self.lenc = EndpointEncoder(d, conf.keypoint_encoder)
        self.gnn = nn.Module()
        self.gnn.layers = nn.ModuleList(
            [GNNLayer(d, t, conf.num_heads) for t in conf.GNN_layers]
        )
        self.gnn.line_layers = nn.ModuleList(
            [LineLayer(d) for _ in range(len(conf.GNN_layers) // 2)]
        )
        self.final_proj = self._proj(d)
        self.final_line_proj = self._proj(d)
        self.inter_layers = list(conf.inter_supervision or [])
        if self.inter_layers:
            self.inter_line_proj = nn.ModuleList(
                [self._proj(d) for _ in self.inter_layers]
            )
        self.bin_score = nn.Parameter(torch.tensor(1.0))
        self.line_bin_score = nn.Parameter(torch.tensor(1.0))
        if conf.weights is not None:
            self.load_weights(conf.weights)

    @staticmethod
    def _proj(d: int) -> nn.Conv1d:
        proj = nn.Conv1d(d, d, kernel_size=1)
        nn.init.constant_(proj.bias, 0.0)
        nn.init.orthogonal_(proj.weight, gain=1)
        return proj

    def load_weights(self, weights: str | Path | Mapping) -> None:
        """Load the official checkpoint (registry name ``gluestick-md``), a training
        checkpoint or a state dict, strictly: every key consumed, none missing."""
        from ....weights import load_weights  # the weights layer is needed only here

        if isinstance(weights, Mapping):
            state, source = weights, "(state dict)"
        else:
            name = WEIGHT_ALIASES.get(str(weights), str(weights))
            state, source = load_weights(name), name
        if not isinstance(state, Mapping):
            raise ConfigError(f"Weights {source} are not a state dict.")
        if "model" in state:  # a training checkpoint: the matcher's part
            state = {
                k.replace("module.", "").removeprefix("matcher."): v
                for k, v in state["model"].items()
                if "matcher." in k
            }
        load_state_dict_strict(self, dict(state), source)

    # ------------------------------------------------------------------ forward

    def _size(self, data: dict, i: int, like: torch.Tensor) -> torch.Tensor:
        view = data.get(f"view{i}")
        view = view if isinstance(view, Mapping) else {}
        if "image_size" in view:
            return torch.as_tensor(view["image_size"]).to(like)
        if "image" in view:
            h, w = view["image"].shape[-2:]
            return like.new_tensor([w, h])
        raise InputError(
            f"GlueStick needs view{i}.image_size (B, 2) as (w, h) or view{i}.image to "
            "normalise the keypoints."
        )

    def _image(self, data: dict, i: int):
        """Normalised keypoints and lines, descriptors, scores and masks of image i."""
        kpts, desc = data[f"keypoints{i}"], data[f"descriptors{i}"]
        lines, junc = data[f"lines{i}"], data[f"lines_junc_idx{i}"]
        b, n = kpts.shape[:2]
        n_lines = lines.shape[1]
        if desc.shape != (b, n, self.conf.input_dim):
            raise InputError(
                f"descriptors{i} must be (B, N, {self.conf.input_dim}) for keypoints{i} "
                f"{tuple(kpts.shape)}, got {tuple(desc.shape)}."
            )
        if lines.shape[-2:] != (2, 2) or junc.shape != (b, n_lines, 2):
            raise InputError(
                f"lines{i} must be (B, L, 2, 2) and lines_junc_idx{i} (B, L, 2), got "
                f"{tuple(lines.shape)} and {tuple(junc.shape)}."
            )
        kmask = data.get(f"keypoint_mask{i}")
        kmask = None if kmask is None else kmask.bool()
        lmask = data.get(f"line_mask{i}")
        lmask = None if lmask is None else lmask.bool()
        dtype = torch.float64 if kpts.dtype == torch.float64 else torch.float32
        kpts, lines = kpts.to(dtype), lines.to(dtype)
        size = self._size(data, i, kpts)
        kn = normalize_keypoints(kpts, size) / _SUPERGLUE_SCALE
        ln = normalize_keypoints(lines.reshape(b, -1, 2), size)
        ln = ln.reshape(b, n_lines, 2, 2) / _SUPERGLUE_SCALE
        real = lmask if lmask is not None else junc.new_ones(b, n_lines, dtype=bool)
        junc = junc.long().masked_fill(~real[..., None], 0)
        if bool(((junc < 0) | (junc >= n)).any()):
            raise InputError(f"lines_junc_idx{i} must index keypoints{i} (0..{n - 1}).")
        scores = data[f"keypoint_scores{i}"].to(dtype)
        lscores = self._endpoint_scores(data[f"line_scores{i}"].to(dtype), lmask)
        return kn, desc, scores, kmask, ln, lscores, junc, lmask

    def _endpoint_scores(self, scores: torch.Tensor, mask) -> torch.Tensor:
        """(B, L) line scores -> (B, 2L) endpoint scores (see ``endpoint_scores``):
        upstream tiles the L scores of each image over its 2L endpoints."""
        if self.conf.endpoint_scores == "per_line":
            return scores.repeat_interleave(2, 1)
        b, n = scores.shape
        count = mask.sum(1) if mask is not None else scores.new_full((b,), n).long()
        k = torch.arange(2 * n, device=scores.device)
        return scores.gather(1, k[None] % count.clamp(min=1)[:, None])

    def _forward(self, data: dict) -> dict:
        kn0, desc0, sc0, kv0, ln0, ls0, junc0, lv0 = self._image(data, 0)
        kn1, desc1, sc1, kv1, ln1, ls1, junc1, lv1 = self._image(data, 1)
        b, m, n = kn0.shape[0], kn0.shape[1], kn1.shape[1]
        l0, l1 = ln0.shape[1], ln1.shape[1]
        if kn1.shape[0] != b:
            raise InputError(f"Batch sizes differ: {b} vs {kn1.shape[0]}.")
        dev = kn0.device
        lv0 = lv0 if lv0 is not None else torch.ones(b, l0, dtype=bool, device=dev)
        lv1 = lv1 if lv1 is not None else torch.ones(b, l1, dtype=bool, device=dev)
        if m == 0 or n == 0:  # nothing to match: all unmatched
            return self._unmatched(b, m, n, l0, l1, kv0, kv1, lv0, lv1)

        x = torch.cat([desc0, desc1], 1)
        if self.conf.input_dim != self.conf.descriptor_dim:
            x = pointwise(self.input_proj, x)
        valid = None
        if kv0 is not None or kv1 is not None:
            valid = torch.cat(
                [
                    kv0 if kv0 is not None else kn0.new_ones(b, m, dtype=bool),
                    kv1 if kv1 is not None else kn1.new_ones(b, n, dtype=bool),
                ],
                1,
            )
        x = x + self.kenc(torch.cat([kn0, kn1], 1), torch.cat([sc0, sc1], 1), valid, m)

        # the line layers of a pair run only when both images have lines (upstream)
        both = lv0.any(1) & lv1.any(1)
        ends_valid = torch.cat([lv0 & both[:, None], lv1 & both[:, None]], 1)
        ends_valid = ends_valid.repeat_interleave(2, 1)
        line_ctx = None
        if bool(ends_valid.any()):
            enc = self.lenc(
                torch.cat([ln0, ln1], 1),
                torch.cat([ls0, ls1], 1),
                ends_valid,
                2 * l0,
            )
            junc = torch.cat([junc0.flatten(1), junc1.flatten(1) + m], 1)
            line_ctx = (junc, enc, None if bool(ends_valid.all()) else ends_valid)

        x, inter = self._gnn(x, m, valid, key_mask(kv0), key_mask(kv1), line_ctx)

        pred = {}
        md = pointwise(self.final_proj, x)
        sim = md[:, :m] @ md[:, m:].transpose(1, 2) / self.conf.descriptor_dim**0.5
        la = log_double_softmax(sim, self.bin_score, kv0, kv1)
        self._matches(pred, "", la, kv0, kv1)

        heads = [("line_", x, self.final_line_proj)]
        heads += [
            (f"line_{k}_", inter[k], self.inter_line_proj[j])
            for j, k in enumerate(self.inter_layers)
        ]
        for prefix, xk, proj in heads:
            raw = self._line_scores(xk, m, proj, junc0, junc1)
            la = log_double_softmax(raw, self.line_bin_score, lv0, lv1)
            self._matches(pred, prefix, la, lv0, lv1)
            if prefix == "line_":
                pred["raw_line_scores"] = raw
        return pred

    def _gnn(self, x, m: int, valid, mask0, mask1, line_ctx):
        """The attention layers; a line layer after each self layer. Returns the final
        tokens and those after the cross layers named in ``inter_supervision``."""
        ckpt = self.conf.checkpointed and self.training and torch.is_grad_enabled()

        def run(layer, *args):
            if ckpt:
                return checkpoint(layer, *args, use_reentrant=False)
            return layer(*args)

        inter = {}
        for i, layer in enumerate(self.gnn.layers):
            x = run(layer, x, m, valid, mask0, mask1)
            if layer.type == "self" and line_ctx is not None:
                junc, enc, ends_valid = line_ctx
                for _ in range(self.conf.num_line_iterations):
                    x = run(
                        self.gnn.line_layers[i // 2],
                        x, m, junc, enc, ends_valid, junc.shape[1] // 2,
                    )  # fmt: skip
            if layer.type == "cross" and i // 2 in self.inter_layers:
                inter[i // 2] = x
        return x, inter

    def _line_scores(self, x, m: int, proj, junc0, junc1) -> torch.Tensor:
        """(B, L0, L1): mean similarity of the two endpoint pairs, best endpoint order."""
        d = x.shape[-1]
        e0 = pointwise(
            proj, x[:, :m].gather(1, junc0.flatten(1)[..., None].expand(-1, -1, d))
        )
        e1 = pointwise(
            proj, x[:, m:].gather(1, junc1.flatten(1)[..., None].expand(-1, -1, d))
        )
        s = e0 @ e1.transpose(1, 2) / d**0.5
        s = s.float() if s.dtype in (torch.float16, torch.bfloat16) else s
        s = s.view(s.shape[0], junc0.shape[1], 2, junc1.shape[1], 2)
        same = s[:, :, 0, :, 0] + s[:, :, 1, :, 1]
        flipped = s[:, :, 0, :, 1] + s[:, :, 1, :, 0]
        return 0.5 * torch.maximum(same, flipped)

    def _matches(self, pred: dict, prefix: str, la, valid0, valid1) -> None:
        b, m, n = la.shape[0], la.shape[1] - 1, la.shape[2] - 1
        if m == 0 or n == 0:  # nothing to match in one image
            m0, m1 = la.new_full((b, m), -1).long(), la.new_full((b, n), -1).long()
            s0, s1 = la.new_zeros(b, m), la.new_zeros(b, n)
        else:
            m0, m1, s0, s1 = filter_matches(
                la, self.conf.filter_threshold, valid0, valid1
            )
        pred[f"{prefix}log_assignment"] = la
        pred[f"{prefix}matches0"], pred[f"{prefix}matches1"] = m0, m1
        pred[f"{prefix}matching_scores0"], pred[f"{prefix}matching_scores1"] = s0, s1

    def _unmatched(self, b, m, n, l0, l1, kv0, kv1, lv0, lv1) -> dict:
        """The outputs of a batch without points in one image: nothing matched."""
        dev = self.bin_score.device
        none0 = torch.zeros(b, m, dtype=bool, device=dev)
        none1 = torch.zeros(b, n, dtype=bool, device=dev)
        pred = {}
        la = log_double_softmax(
            torch.zeros(b, m, n, device=dev), self.bin_score, none0, none1
        )
        self._matches(pred, "", la, none0, none1)
        raw = torch.zeros(b, l0, l1, device=dev)
        none0, none1 = torch.zeros_like(lv0), torch.zeros_like(lv1)
        for prefix in ["line_"] + [f"line_{k}_" for k in self.inter_layers]:
            la = log_double_softmax(raw, self.line_bin_score, none0, none1)
            self._matches(pred, prefix, la, none0, none1)
        pred["raw_line_scores"] = raw
        return pred

    # ------------------------------------------------------------------ loss

    def loss(self, pred: dict, data: dict) -> tuple[dict, dict]:
        """Balanced NLL of the point and line assignments (+ the intermediate line
        assignments, weighted by ``loss.inter_supervision``); see docs/lines.md.

        Ground truth: ``gt_matches0/1`` (and optionally ``gt_assignment``) for points,
        ``gt_line_matches0/1`` (``gt_line_assignment``) for lines; -1 unmatched, -2
        ignored. Padded points and lines carry no weight.
        """
        lconf = self.conf.loss
        line_data = _line_view(data)
        b = pred["log_assignment"].shape[0]
        total = pred["log_assignment"].new_zeros(b)
        losses, metrics = {}, {}
        terms = [
            ("", data, self.bin_score, 1.0),
            ("line_", line_data, self.line_bin_score, 1.0),
        ]
        terms += [
            (f"line_{k}_", line_data, None, w)
            for k, w in zip(self.inter_layers, lconf.inter_supervision)
        ]
        for prefix, gt, bin_score, weight in terms:
            la = pred[f"{prefix}log_assignment"]
            nll, parts = weighted_nll(la, nll_weights(la, gt), lconf.nll_balancing)
            total = total + lconf.nll_weight * weight * nll
            if bin_score is None:
                losses[f"{prefix}assignment_nll"] = nll
                continue
            losses.update({f"{prefix}{k}": v for k, v in parts.items()})
            losses[f"{prefix}bin_score"] = bin_score.detach().expand(b)
            matched = {
                "matches0": pred[f"{prefix}matches0"],
                "matching_scores0": pred[f"{prefix}matching_scores0"],
            }
            metrics.update(
                {f"{prefix}{k}": v for k, v in matcher_metrics(matched, gt).items()}
            )
        losses["total"] = total
        return losses, metrics


def _line_view(data: dict) -> dict:
    """The line ground truth under the point names that the losses and metrics read."""
    out = {
        "gt_matches0": data["gt_line_matches0"],
        "gt_matches1": data["gt_line_matches1"],
    }
    if "gt_line_assignment" in data:
        out["gt_assignment"] = data["gt_line_assignment"]
    for i in (0, 1):
        if f"line_mask{i}" in data:
            out[f"keypoint_mask{i}"] = data[f"line_mask{i}"]
    return out
