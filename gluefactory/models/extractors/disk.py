"""DISK: local features learned with policy gradient (Tyszkiewicz et al., NeurIPS 2020).

Our implementation of the DISK extractor; it loads the official ``depth`` checkpoint
unchanged (weights ``disk-depth``: a legacy pickle ``{'extractor': {'unet.*': ...}}``,
Apache-2.0) and reproduces kornia 0.9.0's ``DISK`` (the parity reference):

- the RGB image in [0, 1] (grey is repeated to 3 channels; no normalisation) goes
  through a U-Net (5 x 5 convolutions, instance norm + PReLU, 4 down/up levels) giving
  a detection heatmap (unnormalised logits) and 128-D dense descriptors at full
  resolution. H and W must be multiples of 16, unless ``pad_if_not_divisible`` zero-pads
  the bottom and right (the maps are cropped back before detection);
- keypoints are the *strict* maxima of the heatmap in (2 ``nms_radius`` + 1)^2 windows
  (5 x 5 by default; the first and last ``nms_radius`` rows/columns are never maxima),
  with a heatmap value strictly above ``detection_threshold`` (a logit: the
  reference's 0.0 keeps positive logits; negative or None: no threshold), at least
  ``remove_borders`` pixels from the border;
- with ``max_num_keypoints > 0`` the strongest are kept (ties at the cut in raster
  order); keypoints are listed in raster order (row by row), as the reference;
- descriptors are the dense descriptors at the keypoint's pixel, L2-normalised.

Coordinates: the reference returns integer pixel indices (centres at integers); we
return the pixel centres in the library convention, ``keypoints = kornia + 0.5``.
Scores are the heatmap logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...geometry.coordinates import CENTER_OFFSET
from ...utils.errors import InputError
from ..utils.keypoints import check_range, remove_borders, strict_local_maxima
from .base import BaseExtractor


def _conv_unit(c_in: int, c_out: int, size: int, norm: bool) -> nn.Sequential:
    """[InstanceNorm, PReLU,] (empty dropout slot), 'same' conv: official key layout."""
    layers = (
        [nn.InstanceNorm2d(c_in), nn.PReLU(c_in)]
        if norm
        else [nn.Sequential(), nn.Sequential()]
    )
    return nn.Sequential(
        *layers, nn.Sequential(), nn.Conv2d(c_in, c_out, size, padding=size // 2)
    )


class UpBlock(nn.Module):
    """Bilinear x2 upsampling of the bottom map, concatenation with the skip, conv."""

    def __init__(self, c_bottom: int, c_skip: int, c_out: int, size: int):
        super().__init__()
        self.conv = _conv_unit(c_bottom + c_skip, c_out, size, norm=True)

    def pre_conv(self, bottom: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """The input of the block's convolution (after norm and PReLU)."""
        up = F.interpolate(bottom, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv[:3](torch.cat([up, skip], 1))

    def forward(self, bottom: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv[3](self.pre_conv(bottom, skip))


class DiskUNet(nn.Module):
    """DISK's U-Net: (B, 3, H, W), H and W multiples of 16 -> (B, desc_dim + 1, H, W).

    Module names follow the official checkpoint (``path_down.i.1.*``, ``path_up.i.*``).
    :meth:`trunk` stops before the last convolution, so that its expensive descriptor
    channels can be evaluated at the keypoints only (:func:`conv_at_pixels`).
    """

    def __init__(self, desc_dim: int = 128, size: int = 5):
        super().__init__()
        down = [16, 32, 64, 64, 64]
        up = [64, 64, 64, desc_dim + 1]
        dims = [3, *down]
        self.path_down = nn.ModuleList(
            nn.Sequential(
                nn.Sequential() if i == 0 else nn.AvgPool2d(2),
                _conv_unit(dims[i], dims[i + 1], size, norm=i > 0),
            )
            for i in range(len(down))
        )
        bottoms, skips = [down[-1], *up[:-1]], dims[-2::-1]
        self.path_up = nn.ModuleList(
            UpBlock(b, s, o, size) for b, s, o in zip(bottoms, skips, up, strict=False)
        )
        self.divisor = 2 ** len(up)

    @property
    def last_conv(self) -> nn.Conv2d:
        return self.path_up[-1].conv[3]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The input (B, C, H, W) of the last convolution."""
        feats = [x]
        for layer in self.path_down:
            feats.append(layer(feats[-1]))
        out, skips = feats[-1], feats[-2::-1]
        for layer, skip in zip(self.path_up[:-1], skips, strict=False):
            out = layer(out, skip)
        return self.path_up[-1].pre_conv(out, skips[len(self.path_up) - 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """All output channels at all pixels (the reference computation)."""
        return self.last_conv(self.trunk(x))


def conv_at_pixels(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    px: torch.Tensor,
    py: torch.Tensor,
) -> torch.Tensor:
    """A 'same' (zero-padded) convolution of x (C, H, W) evaluated only at the integer
    pixels (px, py) (N,): (N, C_out). Equal to ``conv2d(x, weight, bias)[:, py, px].T``
    up to float rounding, at a cost proportional to N instead of H * W."""
    c, h, w = x.shape
    k = weight.shape[-1]
    r = k // 2
    rows = F.pad(x, (r, r, r, r)).permute(1, 2, 0).reshape(-1, c)  # (pixels, C)
    d = torch.arange(k, device=x.device)
    idx = (py[:, None, None] + d[:, None]) * (w + 2 * r) + px[:, None, None] + d
    patches = rows.index_select(0, idx.reshape(-1)).reshape(px.shape[0], -1)
    return F.linear(patches, weight.permute(0, 2, 3, 1).reshape(len(weight), -1), bias)


def _official_state(state) -> dict:
    """The U-Net state dict of an official file (``{'extractor': {'unet.*': ...}}``)."""
    if isinstance(state, dict) and "extractor" in state:
        state = state["extractor"]
    prefix = "unet."
    return {
        k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()
    }


class DISK(BaseExtractor):
    """DISK extractor; see the module docstring for the exact behaviour."""

    default_conf = {
        # official file; registry name or path of a {'extractor': ...} file; None: random
        "weights": "disk-depth",
        "desc_dim": 128,
        "max_num_keypoints": -1,  # -1 or None: all
        "detection_threshold": 0.0,  # logit to exceed; negative or None: top-k only
        "nms_radius": 2,  # strict maximum of its (2 r + 1)^2 window (DISK's 5 x 5)
        "remove_borders": 0,
        "force_num_keypoints": False,
        "pad_if_not_divisible": True,
        "chunk": 4,  # images per U-Net call, to bound memory
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    input_channels = "rgb"
    threshold_on_logits = True  # on logits: 0 keeps positive ones (the reference's)
    threshold_max = None
    min_image_size = 32  # the U-Net pools by 16 and needs 2 x 2 at the bottom

    @classmethod
    def _describe(cls, conf) -> dict:
        return {"descriptor_dim": conf.desc_dim, "scales": False, "orientations": False}

    @classmethod
    def _check_conf(cls, conf) -> None:
        check_range(conf, "desc_dim", "DISK", low=1, integer=True)
        check_range(conf, "chunk", "DISK", low=1, integer=True, allow_none=True)

    def _build(self, conf) -> None:
        self.unet = DiskUNet(conf.desc_dim)
        self.load_weights_into(self.unet, conf.weights, _official_state)

    def _pad(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        d = self.unet.divisor
        if h % d or w % d:
            if not self.conf.pad_if_not_divisible:
                raise InputError(
                    f"DISK needs image sizes divisible by {d}, got {h}x{w}; set "
                    "pad_if_not_divisible=True or resize the image."
                )
            image = F.pad(image, (0, (-w) % d, 0, (-h) % d))
        return image

    def dense(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmap (B, H, W) and raw descriptors (B, D, H, W) at every pixel, as the
        reference computes them (the forward pass needs descriptors at keypoints only)."""
        h, w = image.shape[-2:]
        out = self.unet(self._pad(image))[..., :h, :w]
        return out[:, self.conf.desc_dim], out[:, : self.conf.desc_dim]

    def _select(self, heatmap: torch.Tensor, image_size) -> list[torch.Tensor]:
        """Flat indices of the keypoints of each image, in raster order."""
        conf = self.conf
        mask = strict_local_maxima(heatmap, 2 * conf.nms_radius + 1)
        if self.threshold is not None:
            mask &= heatmap > self.threshold
        if conf.remove_borders > 0 or image_size is not None:
            mask = remove_borders(mask, conf.remove_borders, image_size, fill=False)
        n = self.max_num
        out = []
        for m, s in zip(mask.flatten(1), heatmap.flatten(1), strict=True):
            idx = m.nonzero()[:, 0]
            if n > 0 and len(idx) > n:
                # the n strongest; a stable sort keeps ties at the cut in raster order
                order = torch.sort(s[idx], descending=True, stable=True).indices
                idx = idx[order[:n]].sort().values
            out.append(idx)
        return out

    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        b, _, h, w = image.shape
        conv, dim = self.unet.last_conv, self.conf.desc_dim
        padded = self._pad(image)
        chunk = max(int(self.conf.chunk or b), 1)
        trunk = torch.cat([self.unet.trunk(x) for x in padded.split(chunk)], 0)
        # The heatmap channel at every pixel, the descriptor channels at keypoints only.
        heatmap = F.conv2d(
            trunk, conv.weight[dim:], conv.bias[dim:], padding=conv.padding
        )
        heatmap = heatmap[:, 0, :h, :w]
        image_size = data.get("image_size")
        selected = self._select(heatmap.detach(), image_size)
        kpts = [
            torch.stack([idx % w, idx // w], -1).to(heatmap.dtype) + CENTER_OFFSET
            for idx in selected
        ]
        scores = [heatmap[i].reshape(-1)[idx] for i, idx in enumerate(selected)]

        def describe(i: int, k: torch.Tensor) -> dict:
            pix = k.floor().long()  # descriptor of the pixel that holds the keypoint
            desc = conv_at_pixels(
                trunk[i], conv.weight[:dim], conv.bias[:dim], pix[:, 0], pix[:, 1]
            )
            return {"descriptors": F.normalize(desc, p=2, dim=-1)}

        return self.batch(kpts, scores, (h, w), image_size, describe)
