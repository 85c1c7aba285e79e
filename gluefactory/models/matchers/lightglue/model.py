"""The LightGlue model: the forward pass of the paper and its training loss.

Keypoints (normalised by the image size, optionally with SIFT scale and orientation)
give a rotary position encoding; descriptors, projected to ``descriptor_dim``, are
refined by ``n_layers`` layers of self- and cross-attention; every layer can predict the
assignment, and at inference the model stops early for easy pairs and drops points that
are surely unmatchable (:mod:`.adaptive`). Training supervises every layer's assignment
(deep supervision) and the confidence heads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ....utils.errors import InputError
from ...base_model import BaseModel, load_state_dict_strict
from ...utils.losses import (
    best_assignments,
    confidence_bce,
    dual_softmax,
    dual_softmax_agrees_with_final,
    dual_softmax_nll,
    nll_targets,
)
from ...utils.metrics import matcher_metrics
from . import presets
from .adaptive import (
    Results,
    Running,
    State,
    confidence_threshold,
    exit_pairs,
    prune_keep,
)
from .layers import (
    LearnableFourierPositionalEncoding,
    MatchAssignment,
    TokenConfidence,
    TransformerLayer,
    filter_matches,
    key_mask,
    normalize_keypoints,
)


class LightGlue(BaseModel):
    """LightGlue matcher. Inputs: ``keypoints0/1`` (B, N, 2) pixels, ``descriptors0/1``
    (B, N, input_dim), optionally ``keypoint_mask0/1`` (B, N) bool (False = padding,
    never matched), ``view0/1.image_size`` (B, 2) and, with ``add_scale_ori``,
    ``scales0/1`` and ``oris0/1`` (B, N). Outputs: ``matches0/1`` (-1 = none),
    ``matching_scores0/1``, ``log_assignment`` (B, M+1, N+1), ``stop``, ``prune0/1``,
    ``pruned_fraction`` and, without adaptivity, ``ref_descriptors0/1`` (B, L, N, D)."""

    default_conf = {
        "name": "lightglue",
        "input_dim": 256,  # descriptor dimension of the extractor
        "descriptor_dim": 256,
        "add_scale_ori": False,  # SIFT: encode scale (pixels) and orientation (radians)
        "n_layers": 9,
        "num_heads": 4,
        "flash": True,  # no effect (kept for old configs): attention is always torch SDPA
        "mp": False,  # autocast: True (fp16 on CUDA, bf16 on CPU), "float16", "bfloat16"
        "depth_confidence": -1,  # early exit (inference only), in (0, 1]; -1 = off
        "width_confidence": -1,  # point pruning (inference only), in (0, 1]; -1 = off
        "filter_threshold": 0.1,  # minimum matching score in [0, 1]
        "checkpointed": False,  # gradient checkpointing of each layer in training
        "weights": None,  # None | a features name (official file) | weights name | path
        "features": None,  # None | superpoint | disk | aliked | sift | doghardnet | xfeat
        "loss": {"gamma": 1.0, "fn": "nll", "nll_balancing": 0.5},
    }
    required_data_keys = ["keypoints0", "keypoints1", "descriptors0", "descriptors1"]

    @classmethod
    def check_conf(cls, conf) -> None:
        """Preset consistency and value ranges (ConfigError naming the key)."""
        presets.check_ranges(conf, presets.resolve(conf, LightGlue.default_conf)[0])

    @classmethod
    def requires(cls, conf=None) -> dict:
        """``descriptor_dim`` (input_dim), ``scales`` and ``orientations`` (both
        add_scale_ori) needed from the extractor; from the config, without weights."""
        arch, _ = presets.resolve(cls.build_conf(conf), LightGlue.default_conf)
        return presets.requires(arch)

    def _init(self, conf):
        arch, weights = presets.resolve(conf, LightGlue.default_conf)
        self.arch = arch
        if arch["add_scale_ori"]:
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

    def load_weights(self, weights: str | Path | Mapping) -> None:
        """Load a registered weights name, a file path or a state dict, strictly.

        Official files load unchanged (see :mod:`.presets`); any other missing,
        unexpected or mis-shaped key is an error naming the keys.
        """
        if isinstance(weights, Mapping):
            state, source = weights, "(state dict)"
        else:
            state, source = presets.load_file(weights)
        state, ignore = presets.official_state(state, self.arch["n_layers"], source)
        load_state_dict_strict(self, state, source, ignore=ignore)

    # ------------------------------------------------------------------ forward

    def _mp(self, device_type: str):
        """The autocast context of ``mp`` (a no-op context when off)."""
        mp = self.conf.mp
        if mp in (False, None):
            return contextlib.nullcontext()
        if mp is True:
            dtype = torch.float16 if device_type == "cuda" else torch.bfloat16
        else:
            dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[mp]
        return torch.autocast(device_type, dtype=dtype)

    def _forward(self, data: dict) -> dict:
        with self._mp(data["keypoints0"].device.type):
            return self._match(data)

    def _inputs(self, data: dict, i: int):
        """Normalised keypoints (B, N, 2|4), descriptors and the real-point mask."""
        kpts, desc = data[f"keypoints{i}"], data[f"descriptors{i}"]
        if kpts.dim() != 3 or kpts.shape[-1] != 2:
            raise InputError(
                f"keypoints{i} must be (B, N, 2), got {tuple(kpts.shape)}."
            )
        if desc.shape[:2] != kpts.shape[:2] or desc.shape[-1] != self.arch["input_dim"]:
            raise InputError(
                f"descriptors{i} must be (B, N, {self.arch['input_dim']}) for keypoints{i} "
                f"{tuple(kpts.shape)}, got {tuple(desc.shape)}."
            )
        valid = data.get(f"keypoint_mask{i}")
        if valid is not None:
            valid = valid.bool()
            if valid.shape != kpts.shape[:2]:
                raise InputError(
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
            raise InputError(f"Batch sizes differ: {b} vs {desc1.shape[0]}.")
        dev = kn0.device
        count0 = (
            valid0.sum(-1) if valid0 is not None else torch.full((b,), m, device=dev)
        )
        count1 = (
            valid1.sum(-1) if valid1 is not None else torch.full((b,), n, device=dev)
        )
        valid0 = None if valid0 is not None and bool(valid0.all()) else valid0
        valid1 = None if valid1 is not None and bool(valid1.all()) else valid1
        res = Results(b, m, n, count0 + count1)
        if m == 0 or n == 0:
            return res.output()

        x = self.input_proj(torch.cat([desc0, desc1], 1))
        cos, sin = self.posenc(torch.cat([kn0, kn1], 1).to(self.posenc.Wr.weight.dtype))
        state = State(torch.arange(b, device=dev), None, None, valid0, valid1, m, n)
        run = Running(x, cos, sin, (count0 + count1).clamp(min=1), state)

        L = self.arch["n_layers"]
        early = not self.training and self.conf.depth_confidence > 0
        prune = not self.training and self.conf.width_confidence > 0
        adaptive = early or prune
        checkpointed = (
            self.conf.checkpointed and self.training and torch.is_grad_enabled()
        )
        if adaptive:  # a pair without points in one image runs no layer
            run = self._drop_empty(res, run, 0)
            if run is None:
                return res.output()

        layers_x = []
        for i in range(L):
            s = run.state
            args = (
                run.x,
                run.cos,
                run.sin,
                s.m,
                key_mask(s.valid0),
                key_mask(s.valid1),
            )
            if checkpointed:
                run.x = checkpoint(self.transformers[i], *args, use_reentrant=False)
            else:
                run.x = self.transformers[i](*args)
            if not adaptive:
                layers_x.append(run.x)
                continue
            if i == L - 1:
                break
            confidence = None
            if early:  # pairs confident enough stop here
                confidence = self.token_confidence[i](run.x).float()
                exit_ = exit_pairs(
                    confidence,
                    self.thresholds[i],
                    s.valid,
                    run.num_points,
                    self.conf.depth_confidence,
                )
                if bool(exit_.any()):
                    self._finish(res, s.subset(exit_), run.x[exit_], i)
                    if bool(exit_.all()):
                        return res.output()
                    confidence = confidence[~exit_]
                    run = run.drop(exit_)
            if prune:  # points surely unmatchable leave
                head = self.log_assignment[i].matchability
                matchability = head(run.x).squeeze(-1).float().sigmoid()
                keep = prune_keep(
                    matchability,
                    confidence,
                    self.thresholds[i],
                    self.conf.width_confidence,
                )
                before = run.state
                run, dropped = run.prune(keep)
                res.pruned(before, dropped, i + 1)
                run = self._drop_empty(res, run, i + 1)
                if run is None:
                    return res.output()
        self._finish(res, run.state, run.x, L - 1)
        out = res.output()
        if layers_x:
            xs = torch.stack(layers_x, 1)
            out["ref_descriptors0"], out["ref_descriptors1"] = (
                xs[:, :, :m],
                xs[:, :, m:],
            )
        return out

    @staticmethod
    def _drop_empty(res: Results, run: Running, layers: int) -> Running | None:
        """Pairs with no point left in an image end here (None: no pair is left)."""
        gone = run.state.empty_pairs()
        if gone is None:
            return run
        res.stopped(run.state.rows[gone], layers)
        return None if bool(gone.all()) else run.drop(gone)

    def _finish(self, res: Results, state: State, x: torch.Tensor, i: int) -> None:
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
        """Deep-supervised balanced NLL (+ token-confidence BCE in training); see docs.

        Padded points (``keypoint_mask0/1`` False) carry no weight in any term and are
        not counted by the metrics.
        """
        if "ref_descriptors0" not in pred:
            raise KeyError(
                "LightGlue.loss needs ref_descriptors0/1 of all layers: run the model "
                "without early exit and pruning (depth/width_confidence -1, or train mode)."
            )
        lconf = self.conf.loss
        la_final = pred["log_assignment"]
        b, m, n = la_final.shape[0], la_final.shape[1] - 1, la_final.shape[2] - 1
        targets = nll_targets(data, b, m, n)
        valid0, valid1 = targets.valid0, targets.valid1
        L = pred["ref_descriptors0"].shape[1]
        best_final = best_assignments(la_final.detach())
        total, sum_w = 0.0, 0.0
        conf_loss = la_final.new_zeros(b)
        for i in range(L):  # every layer's NLL, without its dense log-assignment
            d0, d1 = pred["ref_descriptors0"][:, i], pred["ref_descriptors1"][:, i]
            with self._mp(d0.device.type):
                ds = dual_softmax(
                    *self.log_assignment[i].project(d0, d1), valid0, valid1
                )
                nll_i, parts = dual_softmax_nll(ds, targets, lconf.nll_balancing)
            if i == L - 1:
                w, last = 1.0, parts
            else:
                w = lconf.gamma ** (L - i - 1) if lconf.gamma > 0 else i + 1
                token = self.token_confidence[i]
                with self._mp(d0.device.type):
                    logits0 = token.logits(d0).float()
                    logits1 = token.logits(d1).float()
                ok0, ok1 = dual_softmax_agrees_with_final(ds, best_final)
                conf_loss = conf_loss + confidence_bce(
                    logits0, logits1, ok0, ok1, valid0, valid1
                ) / (L - 1)
            total = total + w * nll_i
            sum_w += w
        nll = last["assignment_nll"]
        losses = {"total": total / sum_w, "last": nll.detach().clone(), **last}
        losses["confidence"] = conf_loss
        if self.training:
            losses["total"] = losses["total"] + conf_loss
        p = la_final.detach()[:, :-1].exp().sum(-1)
        if valid0 is None:
            losses["row_norm"] = p.mean(-1)
        else:
            losses["row_norm"] = (p * valid0).sum(-1) / valid0.sum(-1).clamp(min=1)
        return losses, matcher_metrics(pred, data)
