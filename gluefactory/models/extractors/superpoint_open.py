"""Open SuperPoint: the MIT re-implementation of SuperPoint by Rémi Pautrat and
Paul-Edouard Sarlin (github.com/rpautrat/SuperPoint, PyTorch port of the 2018
TensorFlow re-implementation), trained weights ``superpoint_v6_from_tf.pth`` (MIT,
weights name ``"superpoint-open"``).

Architecture (state-dict compatible with that file): four VGG stages of two 3x3 blocks
(channels 64, 64, 128, 128; 2x2 max-pool after the first three), a detector head
(3x3 to 256, 1x1 to 65 logits: 64 pixels of each 8x8 cell plus a "no keypoint" bin)
and a descriptor head (3x3 to 256, 1x1 to ``descriptor_dim``). Each block is
conv -> ReLU -> BatchNorm(eps 1e-3) (ReLU omitted in the two 1x1 output blocks), with
keys ``backbone.{stage}.{0,1}.{conv,bn}.*``, ``detector.{0,1}.{conv,bn}.*`` and
``descriptor.{0,1}.{conv,bn}.*``.

Post-processing as in SuperPoint: softmax, drop the bin, unfold to a full-resolution
score map, max-pool NMS (``nms_radius``), drop ``remove_borders`` pixels, threshold,
top-k. A score-map pixel (i, j) is returned at (i + 0.5, j + 0.5) (library convention)
and its descriptor is bilinearly sampled there from the L2-normalised dense map with
the library's ``grid_sample(align_corners=False)`` convention, which is what the
reference's ``(k + 0.5) / (8 w)`` sampling computes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import ConfigError
from ..utils.keypoints import check_range, sample_descriptors, select_keypoints
from .base import BaseExtractor


class VGGBlock(nn.Module):
    """conv (k x k, 'same' padding) -> ReLU (optional) -> BatchNorm(eps=1e-3)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, relu: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, padding=(kernel_size - 1) // 2)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.relu:
            x = F.relu_(x)
        return self.bn(x)


class SuperPointNet(nn.Module):
    """(B, 1, H, W) grey image -> logits (B, 65, H/8, W/8), raw descriptors (B, D, H/8, W/8)."""

    def __init__(self, channels: list[int], descriptor_dim: int):
        super().__init__()
        if len(channels) != 5:
            raise ConfigError(
                f"SuperPoint channels must have 5 entries, got {channels}."
            )
        self.stride = 2 ** (len(channels) - 2)
        chans = [1, *channels[:-1]]
        stages = []
        for i in range(1, len(chans)):
            layers = [
                VGGBlock(chans[i - 1], chans[i], 3),
                VGGBlock(chans[i], chans[i], 3),
            ]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2, 2))
            stages.append(nn.Sequential(*layers))
        self.backbone = nn.Sequential(*stages)
        c = channels[-1]
        self.detector = nn.Sequential(
            VGGBlock(chans[-1], c, 3), VGGBlock(c, self.stride**2 + 1, 1, relu=False)
        )
        self.descriptor = nn.Sequential(
            VGGBlock(chans[-1], c, 3), VGGBlock(c, descriptor_dim, 1, relu=False)
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # channels-last: faster oneDNN convolutions on the CPU (weights converted in _init)
        features = self.backbone(image.contiguous(memory_format=torch.channels_last))
        return self.detector(features), self.descriptor(features)


def fill_num_batches_tracked(model: nn.Module, state: dict) -> dict:
    """BatchNorm's ``num_batches_tracked`` counters are optional in a checkpoint
    (``torch`` fills them in for files without them); do the same before the strict check.
    """
    state = dict(state)
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = value
    return state


class _SuperPointBase(BaseExtractor):
    """What both SuperPoints share: the post-processing options, the grey input,
    weight loading and SuperPoint's post-processing. Subclasses build ``self.net`` in
    :meth:`_build_net` (image (B, 1, H, W) -> logits, raw descriptors) and may
    override :meth:`_sampler`."""

    default_conf = {
        "descriptor_dim": 256,
        "nms_radius": 4,
        "detection_threshold": 0.005,  # <= 0 or None (e.g. -1): top-k regardless
        "max_num_keypoints": -1,  # <= 0 or None: all
        "remove_borders": 4,
        "force_num_keypoints": False,
        "dense_outputs": False,
        "seed": None,  # padding keypoints: None: global RNG; int: seeded per image
        "trainable": False,
    }
    input_channels = "grey"
    min_image_size = 16  # 8 x 8 cells and a 4 px border

    @classmethod
    def _describe(cls, conf) -> dict:
        return {
            "descriptor_dim": conf.descriptor_dim,
            "scales": False,
            "orientations": False,
        }

    @classmethod
    def _check_conf(cls, conf) -> None:
        check_range(conf, "descriptor_dim", cls.__name__, low=1, integer=True)

    def _build_net(self, conf) -> nn.Module:
        raise NotImplementedError

    def _sampler(self) -> Callable[..., torch.Tensor]:
        return sample_descriptors

    def _build(self, conf) -> None:
        self.net = self._build_net(conf)
        self.load_weights_into(
            self.net, conf.weights, lambda s: fill_num_batches_tracked(self.net, s)
        )
        self.net.to(memory_format=torch.channels_last)  # faster CPU convolutions

    def _extract(self, image: torch.Tensor, data: dict) -> dict:
        logits, desc_map = self.net(image)
        desc_map = F.normalize(desc_map, p=2, dim=1)
        return self._outputs(logits, desc_map, data, self._sampler())

    def _outputs(
        self,
        logits: torch.Tensor,
        desc_map: torch.Tensor,
        data: dict,
        sampler: Callable[..., torch.Tensor],
    ) -> dict:
        """SuperPoint's post-processing: ``logits`` (B, 65, h, w) and the
        L2-normalised ``desc_map`` (B, D, h, w) -> keypoints (B, N, 2),
        keypoint_scores, descriptors (B, N, D) (+ keypoint_mask, dense outputs).
        ``sampler(desc_map (1, D, h, w), kpts (1, N, 2), stride=8)`` -> (1, N, D).
        """
        conf, stride = self.conf, 8
        heatmap = F.pixel_shuffle(F.softmax(logits, 1)[:, :-1], stride)[:, 0]
        sizes = data.get("image_size")
        kpts, scores = select_keypoints(
            heatmap,
            conf.nms_radius,
            self.threshold,
            self.max_num,
            conf.remove_borders,
            sizes,
        )

        def describe(i: int, k: torch.Tensor) -> dict:
            # per image, so that batched extraction equals per-image extraction
            desc = sampler(desc_map[i : i + 1], k[None], stride=stride)[0]
            return {"descriptors": desc}

        hw = tuple(data["image"].shape[-2:])
        pred = self.batch(kpts, scores, hw, sizes, describe)
        if conf.dense_outputs:
            pred["dense_descriptors"] = desc_map
            pred["heatmap"] = heatmap
        return pred


class SuperPointOpen(_SuperPointBase):
    """Open SuperPoint keypoints and 256-D L2-normalised descriptors.

    Input ``image`` (B, 1 or 3, H, W) in [0, 1] (RGB is turned to grey), optional
    ``image_size`` (B, 2) valid (w, h) of images padded to a common size. Outputs
    ``keypoints`` (B, N, 2), ``keypoint_scores`` (B, N), ``descriptors`` (B, N, D); with
    ``force_num_keypoints`` also ``keypoint_mask`` (B, N) (padded entries are random
    in-image points with score 0, and their descriptors are sampled there); with
    ``dense_outputs`` also ``dense_descriptors`` (B, D, H/8, W/8) and ``heatmap``
    (B, H', W') (scores before NMS).
    """

    default_conf = {
        "weights": "superpoint-open",  # official file; name or path; None: random init
        "channels": [64, 64, 128, 128, 256],
    }

    def _build_net(self, conf) -> nn.Module:
        return SuperPointNet(list(conf.channels), conf.descriptor_dim)
