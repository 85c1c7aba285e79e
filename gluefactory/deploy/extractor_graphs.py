"""Each extractor as one complete ONNX graph: image -> keypoints, scores, descriptors.

The graph holds the CNN *and* the selection (non-maximum suppression, borders,
threshold, top-k, ALIKED's soft-argmax refinement and SDDH descriptor head, the
descriptor sampling), so that a deployment needs onnxruntime (or TensorRT, ...) only.
Data-dependent sizes are plain ONNX (``TopK`` with a fixed k, then ``NonZero`` to drop
the candidates below the threshold): no loop, no control flow.

Every graph (:data:`SPECS`) has the inputs

- ``image`` (1, C, H, W) float32 in [0, 1], H and W dynamic (any size >= the
  extractor's ``min_image_size``; the padding or resizing of the PyTorch extractor is
  in the graph); C = 3 (RGB) for ALIKED and DISK, 1 (grey) for XFeat and SuperPoint;
- ``threshold`` float32 scalar: the detection threshold on the extractor's score
  scale, ``-inf`` for none (top-k only);

and the outputs ``keypoints`` (1, K, 2) pixels (library convention, docs/geometry.md),
``scores`` (1, K), ``descriptors`` (1, K, D), sorted by decreasing score, with
K <= ``max_num_keypoints`` (fixed at export: the top-k).

The selection is written again here with operators that trace (shapes kept as traced
values, no Python branch on a size, no ``nonzero`` per image); the export checks each
graph against this module at other sizes, and the deploy tests check it against the
PyTorch extractor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..geometry.coordinates import CENTER_OFFSET
from ..models.extractors.aliked import ALIKED, FeatureLevels
from ..models.extractors.base import BaseExtractor
from ..models.extractors.disk import DISK, conv_at_pixels
from ..models.extractors.superpoint_open import _SuperPointBase
from ..models.extractors.xfeat import XFeat
from ..models.utils.keypoints import (
    remove_borders,
    simple_nms_mask,
    strict_local_maxima,
)
from ..utils.errors import ConfigError
from .graph import export_graph
from .row_sampling import RowMap

INPUTS = ("image", "threshold")
OUTPUTS = ("keypoints", "scores", "descriptors")
_INF = float("-inf")


def _wh(x: torch.Tensor, w, h) -> torch.Tensor:
    """(2,) float tensor (w, h) from traced sizes (``torch.tensor`` would freeze them)."""
    return torch.cat([x.new_full((1,), w), x.new_full((1,), h)]).to(torch.float32)


def _top_k(cand: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest entries of a flat map (P,) and their indices, sorted; padded
    with -inf (index P) where P < k, so that k is a constant of the graph."""
    pad = cand.new_full((k,), _INF)
    return torch.topk(torch.cat([cand, pad]), k)


def _outputs(kpts, scores, desc) -> tuple[torch.Tensor, ...]:
    return kpts[None].float(), scores[None].float(), desc[None].float()


class _AlikedGraph(nn.Module):
    """ALIKED: centred replicate padding, CNN, strict (or simple) NMS, top-k with the
    threshold (or the mean score where no maximum passes it), soft-argmax refinement,
    bilinear score, SDDH."""

    def __init__(self, ex: ALIKED, k: int):
        super().__init__()
        self.ex, self.k = ex, k

    def forward(self, image: torch.Tensor, threshold: torch.Tensor):
        ex, conf = self.ex, self.ex.conf
        h, w = image.shape[-2:]
        ph, pw = (-h) % 32, (-w) % 32
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        scores_p, fmap = ex.net(F.pad(image, pad, mode="replicate"))  # no pad inside
        score_map = scores_p[:, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
        fmap = FeatureLevels(fmap.levels, (pad[0], pad[2]), (w, h))
        if conf.nms == "simple":
            is_max = simple_nms_mask(score_map, conf.nms_radius) & (score_map > 0)
        else:
            is_max = strict_local_maxima(score_map, 2 * conf.nms_radius + 1)
        border = max(conf.nms_radius, conf.remove_borders)
        is_max = remove_borders(is_max, border, fill=False)
        vals, idx = _top_k(score_map.masked_fill(~is_max, _INF).reshape(-1), self.k)
        # the reference keeps the maxima above the mean score when none passes
        eff = torch.where(vals[0] > threshold, threshold, score_map.mean())
        idx = idx[vals > eff]
        kpts = ex._refine(score_map[0], idx)  # centre convention
        grid = (kpts / (_wh(kpts, w, h) - 1) * 2 - 1)[None, None]
        sc = F.grid_sample(score_map[:, None], grid, "bilinear", "zeros", True)
        desc = _sddh(ex.net.desc_head, _LevelRows(fmap), kpts)
        return _outputs(kpts + CENTER_OFFSET, sc[0, 0, 0], desc)


class _LevelRows:
    """:meth:`FeatureLevels.at_pixels` (image 0) for the graph: each level a
    :class:`RowMap`, transposed once per image and then sampled by row gathers
    (onnxruntime's ``GridSample`` and strided ``Gather`` are several times slower)."""

    def __init__(self, fmap: FeatureLevels):
        self.maps = [RowMap(level[0]) for level in fmap.levels]
        self.offset, self.size = fmap.offset, fmap.size

    def at_pixels(
        self, _b: int, px: torch.Tensor, py: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        top = self.maps[0]
        px, py = px + self.offset[0], py + self.offset[1]
        parts = [top.at(px, py)]
        # grid_sample's align_corners=True coordinates of the top level's pixels
        gx, gy = px * (2 / (top.w - 1)) - 1, py * (2 / (top.h - 1)) - 1
        for level in self.maps[1:]:
            x, y = (gx + 1) / 2 * (level.w - 1), (gy + 1) / 2 * (level.h - 1)
            parts.append(level.bilinear(x, y))
        feats = torch.cat(parts, 1)  # (P, dim)
        norm = (feats * feats).sum(1).sqrt()
        return feats, norm.clamp_min(1e-12).reciprocal()


def _sddh(head, fmap: _LevelRows, kpts: torch.Tensor) -> torch.Tensor:
    """:class:`~gluefactory.models.extractors.aliked.SDDH` on keypoints (N, 2) (centre
    convention) with traceable operators: the same maths, with the feature-map pixels
    gathered per sample (no de-duplication, no ``embedding_bag``)."""
    w, h = fmap.size
    n, m, ps = kpts.shape[0], head.n_pos, head.kernel_size
    conv0, _, conv1 = head.offset_conv
    lim = _wh(kpts, w, h).long() - 1 - ps  # the patch's last corner (sic, as SDDH)
    corner = torch.minimum((kpts.long() - ps // 2).clamp(min=0), lim)
    r = torch.arange(ps, device=kpts.device)
    ys = (corner[:, 1, None, None] + r[None, :, None]).expand(-1, ps, ps)
    xs = (corner[:, 0, None, None] + r[None, None, :]).expand(-1, ps, ps)
    feats, inv = fmap.at_pixels(0, xs.reshape(-1), ys.reshape(-1))
    patches = (feats * inv[:, None]).reshape(n, -1)
    w0 = conv0.weight.permute(0, 2, 3, 1).reshape(len(conv0.weight), -1)
    offsets = F.selu(F.linear(patches, w0, conv0.bias))
    offsets = F.linear(offsets, conv1.weight[:, :, 0, 0], conv1.bias)
    size = _wh(kpts, w, h)
    max_offset = torch.maximum(size[0], size[1]) / 4.0
    offsets = torch.minimum(torch.maximum(offsets, -max_offset), max_offset)
    pos = (kpts[:, :, None] + offsets.reshape(n, 2, m)).transpose(1, 2).reshape(-1, 2)
    p0 = pos.floor()
    frac = pos - p0
    p0 = p0.long()
    hi = size.long() - 1
    acc = None
    for dy in (0, 1):
        for dx in (0, 1):
            cx, cy = p0[:, 0] + dx, p0[:, 1] + dy
            valid = (cx >= 0) & (cx <= hi[0]) & (cy >= 0) & (cy <= hi[1])
            wx = frac[:, 0] if dx else 1 - frac[:, 0]
            wy = frac[:, 1] if dy else 1 - frac[:, 1]
            cx = torch.minimum(cx.clamp(min=0), hi[0])
            cy = torch.minimum(cy.clamp(min=0), hi[1])
            f, inv = fmap.at_pixels(0, cx, cy)
            term = f * (wx * wy * valid * inv)[:, None]
            acc = term if acc is None else acc + term
    feats = F.selu(acc @ head.sf_conv.weight[:, :, 0, 0].T)  # (N*M, C)
    desc = feats.reshape(n, -1) @ head.agg_weights.reshape(
        -1, head.agg_weights.shape[-1]
    )
    return F.normalize(desc, p=2, dim=-1)


class _DiskGraph(nn.Module):
    """DISK: zero padding to multiples of 16, U-Net trunk, heatmap, strict NMS,
    threshold on the logit, borders, top-k, descriptor convolution at the keypoints."""

    def __init__(self, ex: DISK, k: int):
        super().__init__()
        self.ex, self.k = ex, k

    def forward(self, image: torch.Tensor, threshold: torch.Tensor):
        ex, conf = self.ex, self.ex.conf
        h, w = image.shape[-2:]
        d = ex.unet.divisor
        trunk = ex.unet.trunk(F.pad(image, (0, (-w) % d, 0, (-h) % d)))
        conv, dim = ex.unet.last_conv, conf.desc_dim
        heat = F.conv2d(trunk, conv.weight[dim:], conv.bias[dim:], padding=conv.padding)
        heat = heat[:, 0, :h, :w]
        mask = strict_local_maxima(heat, 2 * conf.nms_radius + 1) & (heat > threshold)
        if conf.remove_borders > 0:
            mask = remove_borders(mask, conf.remove_borders, fill=False)
        vals, idx = _top_k(heat.masked_fill(~mask, _INF).reshape(-1), self.k)
        keep = vals > _INF
        vals, idx = vals[keep], idx[keep]
        px, py = idx % w, torch.div(idx, w, rounding_mode="floor")
        desc = conv_at_pixels(trunk[0], conv.weight[:dim], conv.bias[:dim], px, py)
        kpts = torch.stack([px, py], -1).float() + CENTER_OFFSET
        return _outputs(kpts, vals, F.normalize(desc, p=2, dim=-1))


class _XFeatGraph(nn.Module):
    """XFeat (sparse): channel mean (in the runner), resize to multiples of 32,
    instance norm, CNN, heatmap, strict NMS, threshold on the heatmap, score x
    reliability, top-k, bicubic descriptors."""

    def __init__(self, ex: XFeat, k: int):
        super().__init__()
        self.ex, self.k = ex, k

    def forward(self, image: torch.Tensor, threshold: torch.Tensor):
        ex, conf = self.ex, self.ex.conf
        h, w = image.shape[-2:]
        h2, w2 = h // 32 * 32, w // 32 * 32  # images >= 32 px (the runner checks)
        x = F.interpolate(image, (h2, w2), mode="bilinear", align_corners=False)
        # F.instance_norm, written out (its export needs a static channel count)
        mean = x.mean((2, 3), keepdim=True)
        var = ((x - mean) ** 2).mean((2, 3), keepdim=True)
        x = (x - mean) * torch.rsqrt(var + ex.eps)
        feats, logits, reliability = ex.net(x)
        feats = F.normalize(feats, dim=1)
        heat = F.pixel_shuffle(F.softmax(logits, 1)[:, :64], 8)[:, 0]  # (1, H', W')
        mask = strict_local_maxima(heat, 2 * conf.nms_radius + 1) & (heat > threshold)
        # XFeat's grid 2 p / (size - 1) - 1 (align_corners=False) at every pixel p
        size2 = _wh(heat, w2, h2)
        xs = torch.arange(w2, device=heat.device).float()
        ys = torch.arange(h2, device=heat.device).float()
        gx = (2 * xs / (size2[0] - 1) - 1)[None, :].expand(h2, -1)
        gy = (2 * ys / (size2[1] - 1) - 1)[:, None].expand(-1, w2)
        grid = torch.stack([gx, gy], -1)[None]
        rel = F.grid_sample(reliability, grid, "bilinear", align_corners=False)
        ratio = _wh(heat, w, h) / size2
        if conf.remove_borders > 0:  # the border of the input image
            b, size = conf.remove_borders, _wh(heat, w, h)
            px = ((xs + CENTER_OFFSET) * ratio[0]).floor()
            py = ((ys + CENTER_OFFSET) * ratio[1]).floor()
            inx = (px >= b) & (px < size[0] - b)
            iny = (py >= b) & (py < size[1] - b)
            mask = mask & (iny[:, None] & inx[None, :])[None]
        score = (heat * rel[:, 0]).masked_fill(~mask, _INF)
        vals, idx = _top_k(score.reshape(-1), self.k)
        keep = vals > 0  # as the reference (drops numerically null scores)
        vals, idx = vals[keep], idx[keep]
        pos = torch.stack([idx % w2, torch.div(idx, w2, rounding_mode="floor")], -1)
        pos = pos.float()
        g = (2.0 * pos / (size2 - 1) - 1.0)[None, None]
        desc = F.grid_sample(feats, g, mode="bicubic", align_corners=False)[0, :, 0].t()
        kpts = (pos + CENTER_OFFSET) * ratio
        return _outputs(kpts, vals, F.normalize(desc, dim=-1))


class _SuperPointGraph(nn.Module):
    """SuperPoint(-open): CNN, softmax heatmap, max-pool NMS with its extra rounds,
    borders, threshold, top-k, bilinear descriptors of the normalised map."""

    def __init__(self, ex: _SuperPointBase, k: int):
        super().__init__()
        self.ex, self.k = ex, k

    def forward(self, image: torch.Tensor, threshold: torch.Tensor):
        ex, conf = self.ex, self.ex.conf
        logits, desc_map = ex.net(image)
        desc_map = F.normalize(desc_map, p=2, dim=1)
        heat = F.pixel_shuffle(F.softmax(logits, 1)[:, :-1], 8)[:, 0]
        h8, w8 = heat.shape[-2:]
        mask = heat > threshold
        if conf.nms_radius > 0:
            mask = mask & simple_nms_mask(heat, conf.nms_radius)
        if conf.remove_borders > 0:
            mask = remove_borders(mask, conf.remove_borders, fill=False)
        vals, idx = _top_k(heat.masked_fill(~mask, _INF).reshape(-1), self.k)
        keep = vals > _INF
        vals, idx = vals[keep], idx[keep]
        pos = torch.stack([idx % w8, torch.div(idx, w8, rounding_mode="floor")], -1)
        kpts = pos.float() + CENTER_OFFSET
        grid = (kpts / _wh(kpts, w8, h8) * 2 - 1)[None, None]
        desc = F.grid_sample(desc_map, grid, "bilinear", align_corners=False)
        desc = F.normalize(desc[0, :, 0].t(), p=2, dim=-1)
        return _outputs(kpts, vals, desc)


@dataclass(frozen=True)
class Spec:
    """How one extractor class becomes a graph, and what its runner feeds it."""

    graph: Callable[[BaseExtractor, int], nn.Module]
    #: the image the graph takes: "rgb" (3 channels, grey repeated), "luma" (grey,
    #: ITU-R 601 weights), "mean" (grey, the channels' mean)
    color: str


SPECS: dict[type, Spec] = {
    ALIKED: Spec(_AlikedGraph, "rgb"),
    DISK: Spec(_DiskGraph, "rgb"),
    XFeat: Spec(_XFeatGraph, "mean"),
    _SuperPointBase: Spec(_SuperPointGraph, "luma"),
}


def spec_of(extractor: BaseExtractor) -> Spec:
    """The graph spec of ``extractor`` (ConfigError naming the option if none)."""
    conf = extractor.conf
    for cls, spec in SPECS.items():
        if isinstance(extractor, cls):
            if isinstance(extractor, XFeat) and conf.dense:
                raise ConfigError(
                    "export_onnx: XFeat dense=true (XFeat*) is not supported; "
                    "export the sparse XFeat (dense=false)."
                )
            if conf.force_num_keypoints:
                raise ConfigError(
                    "export_onnx: extractor force_num_keypoints=true is not supported "
                    "(padded keypoints would be matched); set it to false."
                )
            if extractor.max_num <= 0:
                raise ConfigError(
                    "export_onnx: extractor max_num_keypoints="
                    f"{conf.max_num_keypoints!r}: the graph's top-k is fixed at "
                    "export; set it > 0 (the runner may lower it)."
                )
            return spec
    raise ConfigError(
        f"export_onnx: extractor {type(extractor).__name__} is not supported; "
        f"supported: {', '.join(c.__name__.strip('_') for c in SPECS)}."
    )


def graph_threshold(extractor: BaseExtractor) -> float:
    """The ``threshold`` input for the extractor's configured threshold (-inf: none)."""
    return _INF if extractor.threshold is None else float(extractor.threshold)


def same_keypoints(got: list, want: list, px: float = 0.05) -> bool:
    """Whether two (keypoints, scores, descriptors) outputs hold the same keypoints:
    counts within 2 %, >= 95 % of ``want``'s keypoints within ``px`` of one of
    ``got``'s with a descriptor within 0.02. Float rounding (onnxruntime's kernels
    against PyTorch's) reorders near ties and moves a few points across the top-k
    cut; a size frozen by the trace changes far more."""
    (k0, _, d0), (k1, _, d1) = [[np.asarray(a)[0] for a in x] for x in (got, want)]
    if abs(len(k0) - len(k1)) > 0.02 * max(len(k1), 1) + 1:
        return False
    if len(k1) == 0 or len(k0) == 0:
        return len(k0) == len(k1)
    dist = np.linalg.norm(k1[:, None] - k0[None], axis=-1)
    j = dist.argmin(1)
    ok = (dist[np.arange(len(k1)), j] < px) & (np.abs(d0[j] - d1).max(1) < 0.02)
    return bool(ok.mean() >= 0.95)


def export_extractor(extractor: BaseExtractor, folder: Path, opset: int) -> dict:
    """Write ``extractor.onnx``; returns the manifest entry."""
    spec = spec_of(extractor)
    extractor = extractor.eval()
    module = spec.graph(extractor, extractor.max_num)
    channels = 3 if spec.color == "rgb" else 1
    g = torch.Generator().manual_seed(0)
    th = torch.tensor(graph_threshold(extractor))
    # traced at a size that needs padding / resizing, checked at another one
    trace, check = (
        (torch.rand(1, channels, h, w, generator=g), th)
        for h, w in ((100, 140), (131, 170))
    )
    axes = {"image": {2: "H", 3: "W"}, **{k: {1: "K"} for k in OUTPUTS}}
    export_graph(
        module, trace, check, folder / "extractor.onnx", INPUTS, OUTPUTS, axes, opset,
        compare=same_keypoints,
    )  # fmt: skip
    return {
        "class": type(extractor).__name__,
        "color": spec.color,
        "max_num_keypoints": extractor.max_num,
        "threshold_on_logits": extractor.threshold_on_logits,
        "min_image_size": extractor.min_image_size,
        "inputs": list(INPUTS),
        "outputs": list(OUTPUTS),
    }
