"""ALIKED: keypoints with a differentiable detector and sparse deformable descriptors.

Zhao et al., "ALIKED: A Lighter Keypoint and Descriptor Extraction Network via
Deformable Transformation", TIM 2023. Our implementation; it loads the official
checkpoints unchanged (weights ``aliked-n16``, ``aliked-n16rot``, ``aliked-n32``,
``aliked-t16``; BSD-3) and reproduces kornia 0.9.0's ``ALIKED`` (the parity reference):

- the RGB image in [0, 1] (grey is repeated to 3 channels) is replicate-padded around
  its centre to multiples of 32; a 4-level CNN (deformable convolutions in levels
  3-4) gives a score map in (0, 1) and a ``dim``-channel feature map, both cropped
  back;
- candidates are the *strict* maxima of the score map in (2 nms_radius + 1)^2 windows
  (``nms: strict``, kornia's), or the maxima of SuperPoint's max-pool NMS with its two
  extra rounds (``nms: simple``: ties kept, plus points that become maxima once the
  windows of the first maxima are suppressed; the NMS of the official ALIKED code and
  of upstream Glue Factory), at least ``max(nms_radius, remove_borders)`` pixels from
  the border;
- selection: with ``detection_threshold > 0`` the maxima above it (an image with none
  keeps the maxima above its mean score), at most ``max_num_keypoints`` (or
  ``n_limit_max``); with ``detection_threshold <= 0`` or None (no threshold) and
  ``max_num_keypoints > 0`` the ``max_num_keypoints`` best maxima; with no threshold
  and no limit every maximum (at most ``n_limit_max``; the reference keeps those above
  the mean score there);
- each keypoint is refined by a soft-argmax (temperature 0.1) over its window, scored by
  the bilinearly interpolated score map, and described by SDDH: M deformable samples of
  the normalised feature map around it, projected and aggregated, L2-normalised.

Coordinates: the reference maps [-1, 1] to pixels with (w - 1, h - 1), i.e. pixel
centres at integers. We return the library convention (centre of pixel (i, j) at
(i + 0.5, j + 0.5)): ``keypoints = kornia_keypoints + 0.5`` exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ...geometry.coordinates import from_center_convention, to_center_convention
from ...utils.errors import ConfigError
from ..utils.deform_conv import DeformConv2d
from ..utils.keypoints import (
    check_range,
    remove_borders,
    simple_nms_mask,
    strict_local_maxima,
)
from .base import BaseExtractor

# c1, c2, c3, c4, dim, K (SDDH patch size), M (SDDH samples per keypoint)
ALIKED_CONFIGS = {
    "aliked-t16": (8, 16, 32, 64, 64, 3, 16),
    "aliked-n16": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n16rot": (16, 32, 64, 128, 128, 3, 16),
    "aliked-n32": (16, 32, 64, 128, 128, 3, 32),
}


def _conv(c_in: int, c_out: int, dcn: bool) -> nn.Module:
    if dcn:
        return DeformConv2d(c_in, c_out, 3, padding=1, bias=False)
    return nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)


def _selu(x: torch.Tensor) -> torch.Tensor:
    return F.selu(x, inplace=not torch.is_grad_enabled())


def conv_bn(x: torch.Tensor, conv: nn.Module, bn: nn.BatchNorm2d) -> torch.Tensor:
    """bn(conv(x)); in evaluation mode the BatchNorm is folded into the kernel."""
    if bn.training:
        return bn(conv(x))
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    weight = conv.weight if isinstance(conv, nn.Conv2d) else conv.regular_conv.weight
    bias = bn.bias - bn.running_mean * scale
    weight = weight * scale[:, None, None, None]
    if isinstance(conv, nn.Conv2d):
        return F.conv2d(x, weight, bias, conv.stride, conv.padding)
    return conv(x, weight, bias)


class ConvBlock(nn.Module):
    """(3x3 conv -> BatchNorm -> SELU) x 2."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, False), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, False), nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _selu(conv_bn(x, self.conv1, self.bn1))
        return _selu(conv_bn(x, self.conv2, self.bn2))


class ResBlock(nn.Module):
    """Residual block: (deformable) 3x3 convolutions and a 1x1 projection shortcut."""

    def __init__(self, c_in: int, c_out: int, dcn: bool):
        super().__init__()
        self.conv1, self.bn1 = _conv(c_in, c_out, dcn), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv(c_out, c_out, dcn), nn.BatchNorm2d(c_out)
        self.downsample = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _selu(conv_bn(x, self.conv1, self.bn1))
        out = conv_bn(out, self.conv2, self.bn2)
        return _selu(out + self.downsample(x))


class FeatureLevels(NamedTuple):
    """ALIKED's descriptor map, kept factorised: the full map is the concatenation of
    ``levels`` (each (B, dim/4, h_k, w_k), on the padded image) bilinearly upsampled
    (align_corners=True) to the padded size, L2-normalised, cropped at ``offset``."""

    levels: list[torch.Tensor]
    offset: tuple[int, int]  # (left, top) padding
    size: tuple[int, int]  # (w, h) of the image

    def at_pixels(
        self, b: int, px: torch.Tensor, py: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of image ``b`` at integer pixels px, py (P,): unnormalised (P, dim)
        and the inverse of their norms (P,); the map is their product (consumers fold
        the scale into later weights)."""
        f1 = self.levels[0][b]
        c, hp, wp = f1.shape
        px, py = px + self.offset[0], py + self.offset[1]
        parts = [f1.reshape(c, -1)[:, py * wp + px]]  # (c, P)
        grid = torch.stack([px * (2 / (wp - 1)) - 1, py * (2 / (hp - 1)) - 1], -1)
        grid = grid.to(f1.dtype).reshape(1, 1, -1, 2)
        for f in self.levels[1:]:  # the upsampling, at the requested pixels only
            parts.append(
                F.grid_sample(f[b : b + 1], grid, "bilinear", "zeros", True)[0, :, 0]
            )
        feats = torch.cat([p.T for p in parts], 1)  # (P, dim), row-major
        norm = (feats * feats).sum(1).sqrt()
        return feats, norm.clamp_min(1e-12).reciprocal()  # as F.normalize

    def dense(self) -> torch.Tensor:
        """The full normalised map (B, dim, H, W) (for inspection and tests)."""
        hp, wp = self.levels[0].shape[-2:]
        up = [
            F.interpolate(f, (hp, wp), mode="bilinear", align_corners=True)
            for f in self.levels[1:]
        ]
        x = F.normalize(torch.cat([self.levels[0], *up], 1), p=2, dim=1)
        (l, t), (w, h) = self.offset, self.size
        return x[..., t : t + h, l : l + w]


class SDDH(nn.Module):
    """Sparse deformable descriptor head.

    For each keypoint, a K x K patch of the feature map predicts M offsets; the feature
    map is sampled there (bilinearly, zeros outside the image), projected (``sf_conv``)
    and aggregated with per-sample matrices (``agg_weights``, M x C x D). Only the
    feature-map pixels needed are computed (see :class:`FeatureLevels`).
    """

    def __init__(self, dim: int, kernel_size: int, n_pos: int):
        super().__init__()
        self.kernel_size, self.n_pos = kernel_size, n_pos
        self.offset_conv = nn.Sequential(
            nn.Conv2d(dim, 2 * n_pos, kernel_size, bias=True),
            nn.SELU(),
            nn.Conv2d(2 * n_pos, 2 * n_pos, 1, bias=True),
        )
        self.sf_conv = nn.Conv2d(dim, dim, 1, bias=False)
        self.agg_weights = nn.Parameter(torch.rand(n_pos, dim, dim))

    def _patch_pixels(self, kpts: torch.Tensor, w: int, h: int) -> torch.Tensor:
        """Flat pixel indices (N, K * K) of the K x K patch of each keypoint.

        As the reference: the patch's top-left pixel is floor(kpt) - K // 2, clamped to
        [0, size - 1 - K] (sic: the last patch ends one pixel before the border).
        """
        ps = self.kernel_size
        corner = (kpts.long() - ps // 2).clamp(min=0)
        cx = corner[:, 0].clamp(max=w - 1 - ps)
        cy = corner[:, 1].clamp(max=h - 1 - ps)
        r = torch.arange(ps, device=kpts.device)
        ys = cy[:, None, None] + r[None, :, None]  # (N, K, 1)
        xs = cx[:, None, None] + r[None, None, :]  # (N, 1, K)
        return (ys * w + xs).reshape(len(kpts), -1)  # row-major within each patch

    def forward(self, fmap: FeatureLevels, b: int, kpts: torch.Tensor) -> torch.Tensor:
        """Descriptors (N, D) of image ``b`` at keypoints (N, 2) (centre convention)."""
        w, h = fmap.size
        n, m = len(kpts), self.n_pos
        conv0, _, conv1 = self.offset_conv
        patch_idx = self._patch_pixels(kpts, w, h)  # (N, K*K)
        uniq, inverse = _unique_pixels(patch_idx, h * w)
        feats, inv_norm = fmap.at_pixels(b, uniq % w, uniq // w)
        patches = F.embedding(inverse, feats * inv_norm[:, None]).reshape(n, -1)
        # A K x K convolution on a K x K patch is a linear layer on the flat patch.
        w0 = conv0.weight.permute(0, 2, 3, 1).reshape(len(conv0.weight), -1)
        offsets = F.selu(F.linear(patches, w0, conv0.bias))
        offsets = F.linear(offsets, conv1.weight[:, :, 0, 0], conv1.bias)
        max_offset = max(h, w) / 4.0
        offsets = offsets.clamp(-max_offset, max_offset).reshape(n, 2, m)
        pos = (kpts[:, :, None] + offsets).transpose(1, 2).reshape(-1, 2)  # (N*M, 2)
        # Bilinear interpolation with zeros outside the image (grid_sample's rule).
        p0 = pos.floor()
        frac = pos - p0
        p0 = p0.long()
        corners, weights = [], []
        for dy in (0, 1):
            for dx in (0, 1):
                cx, cy = p0[:, 0] + dx, p0[:, 1] + dy
                valid = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
                wx = frac[:, 0] if dx else 1 - frac[:, 0]
                wy = frac[:, 1] if dy else 1 - frac[:, 1]
                corners.append(cy.clamp(0, h - 1) * w + cx.clamp(0, w - 1))
                weights.append(wx * wy * valid)
        uniq, inverse = _unique_pixels(torch.stack(corners, 1), h * w)
        # Weighted sum of the 4 corners of each sample (one fused gather), with the
        # normalisation of each corner folded into its weight.
        feats, inv_norm = fmap.at_pixels(b, uniq % w, uniq // w)
        inverse = inverse.reshape(-1, 4)
        weights = torch.stack(weights, 1).to(feats.dtype) * inv_norm[inverse]
        feats = F.embedding_bag(inverse, feats, per_sample_weights=weights, mode="sum")
        feats = _selu(feats @ self.sf_conv.weight[:, :, 0, 0].T)  # (N*M, C)
        desc = feats.reshape(n, -1) @ self.agg_weights.reshape(
            -1, self.agg_weights.shape[-1]
        )
        return F.normalize(desc, p=2, dim=-1)


def _unique_pixels(idx: torch.Tensor, num: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct values of ``idx`` (flat pixel indices < num), sorted, and the position
    of each entry of ``idx.reshape(-1)`` among them (a lookup table: no sort needed)."""
    flat = idx.reshape(-1)
    seen = torch.zeros(num, dtype=torch.bool, device=idx.device)
    seen[flat] = True
    uniq = seen.nonzero()[:, 0]
    lut = torch.empty(num, dtype=torch.long, device=idx.device)
    lut[uniq] = torch.arange(len(uniq), device=idx.device)
    return uniq, lut[flat]


class ALIKEDNet(nn.Module):
    """The ALIKED CNN: image (B, 3, H, W) -> score map (B, H, W) in (0, 1) and the
    factorised descriptor map (:class:`FeatureLevels`). Module names follow the
    official files."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int, dim: int, k: int, m: int):
        super().__init__()
        self.block1 = ConvBlock(3, c1)
        self.block2 = ResBlock(c1, c2, dcn=False)
        self.block3 = ResBlock(c2, c3, dcn=True)
        self.block4 = ResBlock(c3, c4, dcn=True)
        self.conv1 = nn.Conv2d(c1, dim // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c2, dim // 4, 1, bias=False)
        self.conv3 = nn.Conv2d(c3, dim // 4, 1, bias=False)
        self.conv4 = nn.Conv2d(c4, dim // 4, 1, bias=False)
        self.score_head = nn.Sequential(
            nn.Conv2d(dim, 8, 1, bias=False),
            nn.SELU(),
            nn.Conv2d(8, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 4, 3, padding=1, bias=False),
            nn.SELU(),
            nn.Conv2d(4, 1, 3, padding=1, bias=False),
        )
        self.desc_head = SDDH(dim, k, m)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, FeatureLevels]:
        h, w = image.shape[-2:]
        # Replicate-pad around the centre to multiples of 32, as the reference.
        ph, pw = (-h) % 32, (-w) % 32
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x = F.pad(image, pad, mode="replicate") if ph or pw else image
        x1 = self.block1(x)
        x2 = self.block2(F.avg_pool2d(x1, 2))
        x3 = self.block3(F.avg_pool2d(x2, 4))
        x4 = self.block4(F.avg_pool2d(x3, 4))
        convs = (self.conv1, self.conv2, self.conv3, self.conv4)
        levels = [_selu(c(x)) for c, x in zip(convs, (x1, x2, x3, x4), strict=True)]
        # The score head starts with a 1x1 convolution, which commutes with the
        # bilinear upsampling: apply it per level, then upsample 8 channels, not dim.
        head0 = self.score_head[0].weight[:, :, 0, 0].split(levels[0].shape[1], dim=1)
        size = x1.shape[-2:]
        s = F.conv2d(levels[0], head0[0][..., None, None])
        for f, wk in zip(levels[1:], head0[1:], strict=True):
            sk = F.conv2d(f, wk[..., None, None])
            s = s + F.interpolate(sk, size=size, mode="bilinear", align_corners=True)
        s = self.score_head[1:](s)
        scores = torch.sigmoid(s[:, 0, pad[2] : pad[2] + h, pad[0] : pad[0] + w])
        return scores, FeatureLevels(levels, (pad[0], pad[2]), (w, h))


class ALIKED(BaseExtractor):
    """ALIKED extractor; see the module docstring for the exact behaviour."""

    default_conf = {
        "model_name": "aliked-n16",
        # the official file of model_name; a registry name or path; None: random init
        "weights": "${.model_name}",
        "max_num_keypoints": -1,  # -1 or None: no limit
        "detection_threshold": 0.2,  # score in (0, 1); <= 0 or None: top-k only
        "nms_radius": 2,
        # strict: strict maxima (kornia); simple: SuperPoint-style max-pool NMS with
        # two extra rounds (the official ALIKED code, upstream Glue Factory)
        "nms": "strict",
        "remove_borders": 0,  # extra border; nms_radius pixels are always dropped
        "force_num_keypoints": False,
        "n_limit_max": 20000,
        "temperature": 0.1,  # of the soft-argmax refinement (fixed by training)
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    input_channels = "rgb"
    min_nms_radius = 1  # the NMS window is also the refinement window: >= 3 x 3
    min_image_size = 32  # the CNN pools by 32 (smaller images are mostly padding)

    @classmethod
    def _check_model_name(cls, conf) -> tuple:
        if conf.model_name not in ALIKED_CONFIGS:
            raise ConfigError(
                f"ALIKED: unknown model_name {conf.model_name!r}; "
                f"choose one of {', '.join(ALIKED_CONFIGS)}."
            )
        return ALIKED_CONFIGS[conf.model_name]

    @classmethod
    def _describe(cls, conf) -> dict:
        dim = cls._check_model_name(conf)[4]
        return {"descriptor_dim": dim, "scales": False, "orientations": False}

    @classmethod
    def _check_conf(cls, conf) -> None:
        cls._check_model_name(conf)
        check_range(conf, "n_limit_max", "ALIKED", low=1, integer=True)
        check_range(conf, "temperature", "ALIKED", low=0, low_open=True)
        if conf.nms not in ("strict", "simple"):
            raise ConfigError(
                f"ALIKED: nms must be 'strict' or 'simple', got {conf.nms!r}."
            )

    def _build(self, conf) -> None:
        self.net = ALIKEDNet(*ALIKED_CONFIGS[conf.model_name])
        self.load_weights_into(self.net, conf.weights)
        r = conf.nms_radius
        g = torch.linspace(-r, r, 2 * r + 1)
        # (x, y) offsets of the window, row-major (dy outer, dx inner)
        grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        self.register_buffer("window_xy", grid.flip(-1), persistent=False)

    def _candidates(self, scores: torch.Tensor, image_size) -> list[torch.Tensor]:
        """Flat indices of the selected maxima, per image, in the reference's order."""
        conf = self.conf
        b, h, w = scores.shape
        if conf.nms == "simple":  # scores are sigmoids (> 0): a 0 is never a maximum
            is_max = simple_nms_mask(scores, conf.nms_radius) & (scores > 0)
        else:
            is_max = strict_local_maxima(scores, 2 * conf.nms_radius + 1)
        border = max(conf.nms_radius, conf.remove_borders)
        is_max = remove_borders(is_max, border, image_size, fill=False)
        if self.threshold is None and self.max_num > 0:  # top-k mode
            cand = scores.masked_fill(~is_max, float("-inf")).reshape(b, -1)
            top = torch.topk(cand, min(self.max_num, h * w), dim=1)
            return [
                i[v > float("-inf")]
                for i, v in zip(top.indices, top.values, strict=True)
            ]
        if self.threshold is None:  # no threshold, no limit: every maximum
            masks = is_max
        else:  # above the threshold, or above the mean score where none is
            above = is_max & (scores > self.threshold)
            mean = scores.reshape(b, -1).mean(1)[:, None, None]
            masks = torch.where(
                above.flatten(1).any(1)[:, None, None], above, is_max & (scores > mean)
            )
        limit = self.max_num if self.max_num > 0 else conf.n_limit_max
        out = []
        for mask, s in zip(masks.reshape(b, -1), scores.reshape(b, -1), strict=True):
            idx = mask.nonzero()[:, 0]
            if len(idx) > limit:
                idx = idx[s[idx].sort(descending=True).indices[:limit]]
            out.append(idx)
        return out

    def _refine(self, scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Soft-argmax over the window of each maximum: (H, W), flat indices (N,) ->
        sub-pixel keypoints (N, 2) in the centre convention."""
        h, w = scores.shape
        r = self.conf.nms_radius
        k = 2 * r + 1
        padded = F.pad(scores, (r, r, r, r))  # zeros, as the reference's unfold
        y, x = idx // w, idx % w
        d = torch.arange(k, device=scores.device)
        flat = (y[:, None, None] + d[:, None]) * (w + 2 * r) + x[:, None, None] + d
        patch = padded.reshape(-1)[flat.flatten(1)]  # (N, k * k)
        top = patch.max(1, keepdim=True).values.detach()
        e = ((patch - top) / self.conf.temperature).exp()
        residual = (e @ self.window_xy.to(e)) / e.sum(1, keepdim=True)
        return torch.stack([x, y], -1).to(residual) + residual

    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        b, _, h, w = image.shape
        score_map, fmap = self.net(image)
        image_size = data.get("image_size")
        cand = self._candidates(score_map.detach(), image_size)
        wh = torch.tensor([w - 1, h - 1], device=image.device, dtype=score_map.dtype)
        kpts, scores = [], []
        for i in range(b):
            k = self._refine(score_map[i], cand[i])  # centre convention
            grid = (k / wh * 2 - 1)[None, None]
            sc = F.grid_sample(
                score_map[i][None, None], grid, "bilinear", "zeros", True
            )
            kpts.append(from_center_convention(k))
            scores.append(sc[0, 0, 0])

        def describe(i: int, k: torch.Tensor) -> dict:
            return {"descriptors": self.net.desc_head(fmap, i, to_center_convention(k))}

        return self.batch(kpts, scores, (h, w), image_size, describe)
