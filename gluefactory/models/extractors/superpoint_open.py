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

from ...utils.conf import ConfigError
from ...weights import load_weights
from ..base_model import BaseModel, load_state_dict_strict
from ..utils.keypoints import (
    batch_features,
    check_extractor_conf,
    resolve_threshold,
    sample_descriptors,
    select_keypoints,
    to_grey,
)


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


def superpoint_outputs(
    logits: torch.Tensor,
    desc_map: torch.Tensor,
    conf,
    data: dict,
    sampler: Callable[..., torch.Tensor],
) -> dict:
    """SuperPoint's post-processing, shared with the Magic Leap model.

    ``logits`` (B, 65, h, w) and the L2-normalised ``desc_map`` (B, D, h, w) ->
    keypoints (B, N, 2), keypoint_scores, descriptors (B, N, D) (+ keypoint_valid,
    dense outputs), following ``conf`` (nms_radius, detection_threshold,
    max_num_keypoints, remove_borders, force_num_keypoints, seed, dense_outputs).
    ``sampler(desc_map (1, D, h, w), kpts (1, N, 2), stride=8)`` -> (1, N, D).
    """
    stride = 8
    heatmap = F.pixel_shuffle(F.softmax(logits, 1)[:, :-1], stride)[:, 0]
    sizes = data.get("image_size")
    kpts, scores = select_keypoints(
        heatmap,
        conf.nms_radius,
        resolve_threshold(conf.detection_threshold),
        conf.max_num_keypoints,
        conf.remove_borders,
        sizes,
    )

    def describe(i: int, k: torch.Tensor) -> dict:
        # per image, so that batched extraction equals per-image extraction
        desc = sampler(desc_map[i : i + 1], k[None], stride=stride)[0]
        return {"descriptors": desc}

    pred = batch_features(
        kpts,
        scores,
        tuple(data["image"].shape[-2:]),
        conf.max_num_keypoints,
        conf.force_num_keypoints,
        sizes,
        conf.seed,
        describe,
    )
    if conf.dense_outputs:
        pred["dense_descriptors"] = desc_map
        pred["heatmap"] = heatmap
    return pred


class _SuperPointBase(BaseModel):
    """What both SuperPoints share: the post-processing options, the grey input,
    weight loading and :func:`superpoint_outputs`. Subclasses build ``self.net`` in
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
    required_data_keys = ["image"]

    def _build_net(self, conf) -> nn.Module:
        raise NotImplementedError

    def _sampler(self) -> Callable[..., torch.Tensor]:
        return sample_descriptors

    def _init(self, conf) -> None:
        check_extractor_conf(conf, type(self).__name__)
        self.net = self._build_net(conf)
        if conf.weights is not None:
            state = fill_num_batches_tracked(self.net, load_weights(conf.weights))
            load_state_dict_strict(self.net, state, f"'{conf.weights}'")
        self.net.to(memory_format=torch.channels_last)  # faster CPU convolutions

    def _forward(self, data: dict) -> dict:
        image = to_grey(data["image"], type(self).__name__)
        logits, desc_map = self.net(image)
        desc_map = F.normalize(desc_map, p=2, dim=1)
        return superpoint_outputs(logits, desc_map, self.conf, data, self._sampler())


class SuperPointOpen(_SuperPointBase):
    """Open SuperPoint keypoints and 256-D L2-normalised descriptors.

    Input ``image`` (B, 1 or 3, H, W) in [0, 1] (RGB is turned to grey), optional
    ``image_size`` (B, 2) valid (w, h) of images padded to a common size. Outputs
    ``keypoints`` (B, N, 2), ``keypoint_scores`` (B, N), ``descriptors`` (B, N, D); with
    ``force_num_keypoints`` also ``keypoint_valid`` (B, N) (padded entries are random
    in-image points with score 0, and their descriptors are sampled there); with
    ``dense_outputs`` also ``dense_descriptors`` (B, D, H/8, W/8) and ``heatmap``
    (B, H', W') (scores before NMS).
    """

    default_conf = {
        "weights": "superpoint-open",  # registered name, file path, or None (random)
        "channels": [64, 64, 128, 128, 256],
    }

    def _build_net(self, conf) -> nn.Module:
        return SuperPointNet(list(conf.channels), conf.descriptor_dim)
