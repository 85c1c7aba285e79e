"""LightGlue as ONNX graphs that keep early exit and pruning: one graph per stage.

Adaptive depth and width decide, between layers, whether a pair stops and which
points leave; in one static graph that is control flow over tensors whose sizes
change. So the matcher is cut where the decisions are taken, and the decisions are
taken by the runner (:mod:`.lightglue_runtime`) between the graphs:

- ``matcher_encode.onnx``: keypoints (1, M, 2) and (1, N, 2) in pixels, descriptors
  (1, M, input_dim) and (1, N, input_dim), image sizes (1, 2) as (w, h) -> tokens
  ``x0`` (1, M, D), ``x1`` (1, N, D) and rotary ``cos0, sin0`` (1, M, D/h/2),
  ``cos1, sin1`` (1, N, D/h/2);
- ``matcher_layer{i}.onnx`` (i < L): one self + cross attention layer, tokens and
  rotary in, updated tokens ``y0, y1`` out; layers before the last also output the per-point token
  confidence ``conf0, conf1`` (1, M) / (1, N) and the matchability
  ``match0, match1`` (sigmoid), which early exit and pruning read;
- ``matcher_assign{i}.onnx``: the assignment head of layer i and the mutual-match
  filter: ``x0, x1`` and ``threshold`` (a float32 scalar) -> ``matches0`` (1, M),
  ``matches1`` (1, N) (int64, -1 = none), ``scores0``, ``scores1``.

Batch size 1 (a pair), M and N dynamic: pruning removes points, it never pads. Pairs
of one image with no keypoint never reach the graphs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..models.matchers.lightglue import LightGlue, normalize_keypoints
from ..models.matchers.lightglue.layers import filter_matches
from ..utils.errors import ConfigError
from .graph import export_graph

TOKENS = ("x0", "x1")
UPDATED = ("y0", "y1")  # a graph output may not share an input's name
ROTARY = ("cos0", "sin0", "cos1", "sin1")
HEADS = ("conf0", "conf1", "match0", "match1")
MATCHES = ("matches0", "matches1", "scores0", "scores1")


def check_exportable(matcher: LightGlue) -> None:
    """A ConfigError naming the option when the matcher cannot be exported."""
    conf = matcher.conf
    if matcher.arch["add_scale_ori"]:
        raise ConfigError(
            "export_onnx: LightGlue with add_scale_ori=true (SIFT / DoG-HardNet "
            "features) is not supported: the extractor's scales and orientations are "
            "not exported."
        )
    if conf.mp not in (False, None):
        raise ConfigError(
            f"export_onnx: LightGlue mp={conf.mp!r} is not supported: graphs are "
            "exported in float32; set mp=false."
        )


class _Encode(nn.Module):
    def __init__(self, lg: LightGlue):
        super().__init__()
        self.input_proj, self.posenc = lg.input_proj, lg.posenc

    def forward(self, kpts0, kpts1, desc0, desc1, size0, size1):
        out = []
        for k, d, s in ((kpts0, desc0, size0), (kpts1, desc1, size1)):
            cos, sin = self.posenc(normalize_keypoints(k, s))
            out.append((self.input_proj(d), cos, sin))
        (x0, c0, s0), (x1, c1, s1) = out
        return x0, x1, c0, s0, c1, s1


class _Layer(nn.Module):
    def __init__(self, lg: LightGlue, i: int):
        super().__init__()
        self.layer = lg.transformers[i]
        last = i == len(lg.transformers) - 1
        self.confidence = None if last else lg.token_confidence[i]
        self.matchability = None if last else lg.log_assignment[i].matchability

    def forward(self, x0, x1, cos0, sin0, cos1, sin1):
        m = x0.shape[1]
        x = self.layer(
            torch.cat([x0, x1], 1), torch.cat([cos0, cos1], 1),
            torch.cat([sin0, sin1], 1), m,
        )  # fmt: skip
        x0, x1 = x[:, :m], x[:, m:]
        if self.confidence is None:
            return x0, x1
        conf = [self.confidence(t) for t in (x0, x1)]
        match = [self.matchability(t).squeeze(-1).sigmoid() for t in (x0, x1)]
        return x0, x1, *conf, *match


class _Assign(nn.Module):
    def __init__(self, lg: LightGlue, i: int):
        super().__init__()
        self.head = lg.log_assignment[i]

    def forward(self, x0, x1, threshold):
        return filter_matches(self.head(x0, x1), threshold)


def export_matcher(matcher: LightGlue, folder: Path, opset: int) -> dict:
    """Write the graphs of ``matcher`` into ``folder``; returns their manifest entry."""
    check_exportable(matcher)
    lg = matcher.eval()
    arch = lg.arch
    d, h, n_layers = arch["descriptor_dim"], arch["num_heads"], arch["n_layers"]
    g = torch.Generator().manual_seed(0)

    def examples(m: int, n: int) -> dict:
        """Random inputs with M, N points (traced at one size, checked at another)."""
        rnd = lambda k, c: torch.randn(1, k, c, generator=g)  # noqa: E731
        return {
            "kpts": [torch.rand(1, k, 2, generator=g) * 100 for k in (m, n)],
            "desc": [rnd(k, arch["input_dim"]) for k in (m, n)],
            "size": [torch.tensor([[10.0 * m, 90.0]]), torch.tensor([[64.0, 3.0 * n]])],
            "x": [rnd(k, d) for k in (m, n)],
            "rot": [torch.rand(1, k, d // h // 2, generator=g) for k in (m, m, n, n)],
        }

    trace, check = examples(7, 5), examples(23, 31)  # the graphs take any M, N >= 1
    dyn = {"M": {1: "M"}, "N": {1: "N"}}
    fixed = ("size0", "size1", "threshold")

    def per(names):  # axis 1 of the per-point tensors is M (image 0) or N (image 1)
        return {
            k: dyn["M" if k.endswith("0") else "N"] for k in names if k not in fixed
        }

    def export(module, args, name, inputs, outputs):
        export_graph(
            module, args(trace), args(check), folder / name, inputs, outputs,
            per([*inputs, *outputs]), opset, plain_path=True,
        )  # fmt: skip

    enc_in = ("kpts0", "kpts1", "desc0", "desc1", "size0", "size1")
    enc_args = lambda e: (*e["kpts"], *e["desc"], *e["size"])  # noqa: E731
    export(_Encode(lg), enc_args, "matcher_encode.onnx", enc_in, TOKENS + ROTARY)
    for i in range(n_layers):
        outs = UPDATED + (HEADS if i < n_layers - 1 else ())
        layer_args = lambda e: (*e["x"], *e["rot"])  # noqa: E731
        export(
            _Layer(lg, i), layer_args, f"matcher_layer{i}.onnx", TOKENS + ROTARY, outs
        )
        assign_args = lambda e: (*e["x"], torch.tensor(0.1))  # noqa: E731
        export(
            _Assign(lg, i), assign_args, f"matcher_assign{i}.onnx",
            (*TOKENS, "threshold"), MATCHES,
        )  # fmt: skip
    conf = lg.conf
    return {
        "n_layers": n_layers,
        "input_dim": arch["input_dim"],
        "descriptor_dim": d,
        "thresholds": list(lg.thresholds),
        "depth_confidence": float(conf.depth_confidence),
        "width_confidence": float(conf.width_confidence),
        "filter_threshold": float(conf.filter_threshold),
    }
