"""XFeat: accelerated features for lightweight image matching (Potje et al., CVPR 2024).

Our implementation of the sparse XFeat extractor and its semi-dense XFeat* variant,
loading the official ``xfeat.pt`` unchanged (weights name ``"xfeat"``, Apache-2.0).

What the reference (verlab/accelerated_features, as packaged by kornia 0.9.0) does and we
replicate:

- the image is turned to grey by averaging its channels, resized bilinearly to
  (H', W') = (H, W) rounded down to multiples of 32 (at least 32), and instance-normalised;
- the 65-channel keypoint logits are soft-maxed and unfolded to a full-resolution heatmap;
  keypoints are the *strict* maxima of their 5 x 5 window (``nms_radius`` 2; positions
  whose window leaves the map are never maxima) whose heatmap value is above
  ``detection_threshold`` (<= 0 or None: no threshold); keypoints whose pixel of the
  input image is within ``remove_borders`` of its border (or outside ``image_size``)
  are dropped;
- score = heatmap value x reliability (bilinearly sampled), the ``max_num_keypoints``
  best are kept, sorted by decreasing score;
- descriptors (64-D) are sampled bicubically from the L2-normalised dense map and
  normalised again. The sampling grid is XFeat's own, ``2 p / (W' - 1) - 1`` with
  ``align_corners=False`` for the integer pixel ``p`` of the resized image: the weights
  were trained with it, so we keep it rather than the library's sampling.

Coordinates: the reference reports the integer pixel ``p`` of the resized image at
``p * (W / W')`` in the centre convention. We return the centre of that pixel in the
library convention, ``(p + 0.5) * (W / W')``; the two agree exactly (after the +0.5
of :func:`~gluefactory.geometry.coordinates.from_center_convention`) when H and W are
multiples of 32 and differ by ``0.5 (W / W' - 1)`` px (< 0.02 px for W >= 600) otherwise.

XFeat* (``dense``): for each rescaling factor s in ``dense_scales`` (0.6 and 1.3) the
image is resized by s, then as above; its 8 x 8 cells are ranked by reliability and
``int(dense_share * max_num_keypoints)`` cells are kept from the first scale and the
rest from the second (kornia 0.9.0's split, which never exceeds ``max_num_keypoints``;
the original code gives the second scale ``int(0.8 k)``). A cell is reported at the
reference's anchor, its top-left pixel scaled back (``8 c * ratio / s``, centre
convention) + 0.5, because XFeat*'s refinement offsets are relative to that point;
descriptors are the raw (unnormalised) 64-D cell features, as the refinement MLP
expects, and ``scales`` is 1 / s.

``force_num_keypoints`` pads to exactly ``max_num_keypoints`` with random in-image
points of score 0 (``keypoint_mask`` False) described where they lie (sparse mode, as
SuperPoint in glue-factory), or with zero descriptors and scale 1 (dense mode). They
come from torch's global generator (seeded by the trainer), or, with an integer
``seed``, from a generator seeded anew for every image, so that batched extraction then
equals per-image extraction exactly, padding included.

Speed (CPU), all exact up to float rounding: BatchNorm folded into the convolutions in
evaluation mode; channels-last tensors and weights (about 1.5x faster oneDNN
convolutions); no resize when the size is already a multiple of 32; the heatmap
unfolded with ``pixel_shuffle``; the strict-maximum NMS from shifted slices (a dozen
element-wise maxima instead of 24 comparisons, or of slow 1-D ``max_pool2d``); the dense
map normalised with a channel sum instead of ``linalg.vector_norm``. See
``docs/benchmarks.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...geometry.coordinates import CENTER_OFFSET
from ...utils.errors import ConfigError
from ..utils.keypoints import border_mask, check_range
from .base import BaseExtractor


class BasicLayer(nn.Module):
    """Conv (no bias) -> BatchNorm (no affine) -> ReLU; key names ``layer.{0,1}``.

    In evaluation mode the BatchNorm is folded into the convolution (one op, same maths
    up to float rounding).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1):
        super().__init__()
        padding = 1 if kernel_size == 3 else 0
        self.layer = nn.Sequential(
            nn.Conv2d(
                c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False
            ),
            nn.BatchNorm2d(c_out, affine=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, _ = self.layer
        if self.training:
            return self.layer(x)
        scale = torch.rsqrt(bn.running_var + bn.eps)
        weight = (conv.weight * scale[:, None, None, None]).contiguous(
            memory_format=torch.channels_last
        )
        bias = -bn.running_mean * scale
        x = F.conv2d(x, weight, bias, conv.stride, conv.padding)
        return F.relu_(x)


class XFeatNet(nn.Module):
    """XFeat's CNN: (B, 1, H, W) normalised grey image, H and W multiples of 32 ->
    dense features (B, 64, H/8, W/8), keypoint logits (B, 65, H/8, W/8) and reliability
    (B, 1, H/8, W/8). Module names follow the official ``xfeat.pt``; ``fine_matcher``
    (the XFeat* match-refinement MLP) is kept so that the file loads strictly.
    """

    def __init__(self):
        super().__init__()
        self.skip1 = nn.Sequential(nn.AvgPool2d(4, stride=4), nn.Conv2d(1, 24, 1))
        self.block1 = nn.Sequential(
            BasicLayer(1, 4), BasicLayer(4, 8, stride=2), BasicLayer(8, 8),
            BasicLayer(8, 24, stride=2),
        )  # fmt: skip
        self.block2 = nn.Sequential(BasicLayer(24, 24), BasicLayer(24, 24))
        self.block3 = nn.Sequential(
            BasicLayer(24, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64, 1)
        )
        self.block4 = nn.Sequential(
            BasicLayer(64, 64, stride=2), BasicLayer(64, 64), BasicLayer(64, 64)
        )
        self.block5 = nn.Sequential(
            BasicLayer(64, 128, stride=2), BasicLayer(128, 128), BasicLayer(128, 128),
            BasicLayer(128, 64, 1),
        )  # fmt: skip
        self.block_fusion = nn.Sequential(
            BasicLayer(64, 64), BasicLayer(64, 64), nn.Conv2d(64, 64, 1)
        )
        self.heatmap_head = nn.Sequential(
            BasicLayer(64, 64, 1),
            BasicLayer(64, 64, 1),
            nn.Conv2d(64, 1, 1),
            nn.Sigmoid(),
        )
        self.keypoint_head = nn.Sequential(
            BasicLayer(64, 64, 1), BasicLayer(64, 64, 1), BasicLayer(64, 64, 1),
            nn.Conv2d(64, 65, 1),
        )  # fmt: skip
        layers = []
        for c_in, c_out in [(128, 512), (512, 512), (512, 512), (512, 512)]:
            layers += [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out, affine=False)]
            layers.append(nn.ReLU(inplace=True))
        self.fine_matcher = nn.Sequential(*layers, nn.Linear(512, 64))

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # channels-last makes the oneDNN convolutions about 1.5x faster on the CPU
        x = x.contiguous(memory_format=torch.channels_last)
        x1 = self.block1(x)
        x2 = self.block2(x1 + self.skip1(x))
        x3 = self.block3(x2)
        x4 = self.block4(x3)
        x5 = self.block5(x4)
        size = x3.shape[-2:]
        x4 = F.interpolate(x4, size, mode="bilinear", align_corners=False)
        x5 = F.interpolate(x5, size, mode="bilinear", align_corners=False)
        feats = self.block_fusion(x3 + x4 + x5)
        reliability = self.heatmap_head(feats)
        # 8x8 cells of the image stacked into 64 channels (the inverse of pixel_shuffle)
        logits = self.keypoint_head(F.pixel_unshuffle(x, 8))
        return feats, logits, reliability


def _window_max(x: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Max over windows of length ``k`` along ``dim`` (valid part: size - k + 1).

    Built from shifted slices and ``torch.maximum`` by doubling, which on the CPU is
    several times faster than ``max_pool2d`` with a 1-D kernel.
    """
    n = x.shape[dim]
    out, span = x, 1
    while span * 2 <= k:  # out[i] = max(x[i : i + span])
        out = torch.maximum(
            out.narrow(dim, 0, n - 2 * span + 1),
            out.narrow(dim, span, n - 2 * span + 1),
        )
        span *= 2
    if span < k:  # the rest: a shifted copy (windows overlap; max is idempotent)
        m = n - k + 1
        out = torch.maximum(out.narrow(dim, 0, m), out.narrow(dim, k - span, m))
    return out


def strict_maxima(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """(B, H, W) mask of points strictly above every other point of their
    (2 r + 1)^2 window; points whose window leaves the map are never maxima.

    Same result as :func:`gluefactory.models.utils.keypoints.strict_local_maxima` and
    kornia's ``nms2d`` (the reference's), computed with slices (faster on the CPU).
    """
    if radius == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    b, h, w = scores.shape
    r, k = radius, 2 * radius + 1
    mask = scores.new_zeros((b, h, w), dtype=torch.bool)
    if h < k or w < k:
        return mask
    rows = _window_max(scores, k, 2)  # (B, H, W - 2r): max over the window's width
    above = _window_max(rows[:, : h - r - 1], r, 1)  # r rows above each centre
    below = _window_max(rows[:, r + 1 :], r, 1)  # r rows below
    centre = scores[:, r : h - r]
    left = _window_max(centre[:, :, : w - r - 1], r, 2)
    right = _window_max(centre[:, :, r + 1 :], r, 2)
    others = torch.maximum(torch.maximum(above, below), torch.maximum(left, right))
    mask[:, r : h - r, r : w - r] = centre[:, :, r : w - r] > others
    return mask


def _xfeat_grid(pos: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """XFeat's sampling grid for integer pixels ``pos`` (N, 2) of a (w, h) image.

    ``2 p / (size - 1) - 1``, used with ``align_corners=False`` (the weights' convention).
    """
    size = pos.new_tensor([w - 1, h - 1])
    return (2.0 * pos / size - 1.0)[None, None]  # (1, 1, N, 2)


def _sample(fmap: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """(1, C, h, w) map, (1, 1, N, 2) grid -> (N, C)."""
    out = F.grid_sample(fmap, grid.to(fmap.dtype), mode=mode, align_corners=False)
    return out[0, :, 0].t()


class XFeat(BaseExtractor):
    """XFeat sparse keypoints and 64-D descriptors (or XFeat* semi-dense with ``dense``).

    Input ``image`` (B, 1 or 3, H, W) in [0, 1] (channels averaged to grey).
    Outputs (library convention, see the module docstring): ``keypoints`` (B, N, 2),
    ``keypoint_scores`` (B, N), ``descriptors`` (B, N, 64) L2-normalised; with
    ``force_num_keypoints`` also ``keypoint_mask`` (B, N) (False for padded entries).
    In ``dense`` mode (XFeat*), keypoints are 8 x 8 cells of two rescaled copies of the
    image, scored by reliability, with raw descriptors, plus ``scales`` (B, N). Optional
    input ``image_size`` (B, 2): valid (w, h) of images padded to a common size.
    """

    default_conf = {
        "weights": "xfeat",  # official file; registry name or path; None: random init
        "max_num_keypoints": 4096,  # <= 0 or None: all
        "detection_threshold": 0.05,  # heatmap value to exceed; <= 0 or None: top-k
        "nms_radius": 2,  # strict maximum of its (2 r + 1)^2 window; 0: no NMS
        "remove_borders": 0,  # drop keypoints within this many pixels of the border
        "force_num_keypoints": False,  # pad/cut to exactly max_num_keypoints
        "dense": False,  # XFeat* semi-dense extraction instead of sparse keypoints
        "dense_scales": [0.6, 1.3],  # XFeat* rescaling factors
        "dense_share": 0.2,  # share of max_num_keypoints taken from the first scale
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    input_channels = "any"  # averaged to grey in _prepare, as the reference
    min_image_size = 32  # resized to multiples of 32 (smaller ones: upsampled)

    @classmethod
    def _describe(cls, conf) -> dict:
        # XFeat* (dense) reports the scale of each cell
        return {"descriptor_dim": 64, "scales": bool(conf.dense), "orientations": False}

    @classmethod
    def _has_dense_descriptors(cls, conf) -> bool:
        return not conf.dense  # XFeat* keeps raw cell descriptors, not sampled ones

    @classmethod
    def _check_conf(cls, conf) -> None:
        if conf.dense and conf.remove_borders:
            raise ConfigError(
                "XFeat: remove_borders is not supported with dense=True (XFeat* "
                f"cells), got {conf.remove_borders}; set it to 0."
            )
        check_range(conf, "dense_share", "XFeat", low=0, high=1)
        scales = conf.dense_scales
        if len(scales) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
            for v in scales
        ):
            raise ConfigError(
                "XFeat: dense_scales must be two positive numbers, got "
                f"{list(scales)!r}."
            )

    def _build(self, conf) -> None:
        self.net = XFeatNet()
        self.load_weights_into(self.net, conf.weights)
        self.net.to(memory_format=torch.channels_last)  # faster CPU convolutions
        # The reference normalises the grey image under no_grad with InstanceNorm2d(1).
        self.eps = 1e-5

    # ------------------------------------------------------------------ helpers
    def _prepare(self, image: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """Grey, resized to multiples of 32, instance-normalised; returns ratios W/W', H/H'."""
        h, w = image.shape[-2:]
        h2, w2 = max(32, h // 32 * 32), max(32, w // 32 * 32)
        x = image.float().mean(1, keepdim=True)
        if (h2, w2) != (h, w):
            x = F.interpolate(x, (h2, w2), mode="bilinear", align_corners=False)
        with torch.no_grad():
            x = F.instance_norm(x, eps=self.eps)
        return x, w / w2, h / h2

    # ------------------------------------------------------------------ sparse
    def _detect(self, image: torch.Tensor, sizes: torch.Tensor | None) -> dict:
        conf = self.conf
        x, rw, rh = self._prepare(image)
        b, _, h2, w2 = x.shape
        feats, logits, reliability = self.net(x)
        # = F.normalize(feats, dim=1), several times faster on (B, 64, h, w) maps
        feats = feats * (feats * feats).sum(1, keepdim=True).clamp_min(1e-24).rsqrt()
        heat = F.pixel_shuffle(F.softmax(logits, 1)[:, :64], 8)[:, 0]  # (B, H', W')

        mask = strict_maxima(heat, conf.nms_radius)
        if self.threshold is not None:
            mask &= heat > self.threshold

        ratio = torch.tensor([rw, rh], device=x.device)
        h, w = image.shape[-2:]
        all_kpts, all_scores = [], []
        for i in range(b):
            yx = torch.nonzero(mask[i])
            pos = yx.flip(-1).to(heat.dtype)  # integer (x, y) of the resized image
            kpts = (pos + CENTER_OFFSET) * ratio  # in the input image
            # border (and, for images padded to a common size, outside) points
            keep = border_mask(
                kpts, conf.remove_borders, (w, h) if sizes is None else sizes[i]
            )
            pos, kpts, yx = pos[keep], kpts[keep], yx[keep]
            rel = _sample(reliability[i : i + 1], _xfeat_grid(pos, w2, h2), "bilinear")
            scores = heat[i][yx[:, 0], yx[:, 1]] * rel[:, 0]
            if 0 < self.max_num < len(scores):
                scores, idx = torch.topk(scores, self.max_num, sorted=True)
            else:
                scores, idx = torch.sort(scores, descending=True)
            keep = idx[scores > 0]  # as the reference (drops numerically null scores)
            all_kpts.append(kpts[keep])
            all_scores.append(scores[scores > 0])

        def describe(i: int, kpts: torch.Tensor) -> dict:
            # back to (fractional, for padded points) pixels of the resized image
            grid = _xfeat_grid(kpts / ratio - CENTER_OFFSET, w2, h2)
            desc = _sample(feats[i : i + 1], grid, "bicubic").contiguous()
            return {"descriptors": F.normalize(desc, dim=-1)}

        return self.batch(all_kpts, all_scores, (h, w), sizes, describe)

    # ------------------------------------------------------------------ dense (XFeat*)
    def _dense_single_scale(
        self, image: torch.Tensor, scale: float, k: int
    ) -> list[dict]:
        x = F.interpolate(image.float(), scale_factor=scale, mode="bilinear")
        x, rw, rh = self._prepare(x)
        feats, _, reliability = self.net(x)
        b, c, h8, w8 = feats.shape
        rel = reliability.flatten(1)  # (B, h8 * w8)
        feats = feats.flatten(2).transpose(1, 2)  # (B, h8 * w8, C)
        k = rel.shape[1] if k is None else min(k, rel.shape[1])
        scores, idx = torch.topk(rel, k, dim=1)
        cells = torch.stack([idx % w8, idx // w8], -1).to(x.dtype) * 8
        ratio = torch.tensor([rw, rh], device=x.device) / scale
        # The reference's anchor (top-left pixel of the cell, centre convention, scaled
        # back) + 0.5: XFeat*'s refinement offsets are relative to exactly this point.
        kpts = cells * ratio + CENTER_OFFSET
        desc = torch.gather(feats, 1, idx[..., None].expand(-1, -1, c))
        return [
            {
                "keypoints": kpts[i],
                "keypoint_scores": scores[i],
                "descriptors": desc[i],
                "scales": scores.new_full((k,), 1.0 / scale),
            }
            for i in range(b)
        ]

    def _dense(self, image: torch.Tensor, sizes: torch.Tensor | None) -> dict:
        conf = self.conf
        s1, s2 = conf.dense_scales
        n = self.max_num
        k1, k2 = (None, None) if n <= 0 else (int(n * conf.dense_share), None)
        if k1 is not None:
            k2 = n - k1
        parts = [self._dense_single_scale(image, s2, k2)]
        if k1 is None or k1 > 0:
            parts.insert(0, self._dense_single_scale(image, s1, k1))
        h, w = image.shape[-2:]
        preds = []
        for i in range(image.shape[0]):
            p = {key: torch.cat([q[i][key] for q in parts], 0) for key in parts[0][i]}
            if sizes is not None:  # images padded to a common size: drop outside points
                inside = (p["keypoints"] < sizes[i].to(p["keypoints"])).all(-1)
                p = {key: v[inside] for key, v in p.items()}
            preds.append(p)
        return self.batch(
            [p.pop("keypoints") for p in preds],
            [p.pop("keypoint_scores") for p in preds],
            (h, w),
            sizes,
            fields=preds,
            fill={"descriptors": 0.0, "scales": 1.0},
        )

    # ------------------------------------------------------------------ forward
    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        sizes = data.get("image_size")
        if self.conf.dense:
            return self._dense(image, sizes)
        return self._detect(image, sizes)
