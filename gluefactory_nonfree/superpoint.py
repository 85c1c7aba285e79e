"""SuperPoint with Magic Leap's pretrained weights (DeTone, Malisiewicz, Rabinovich,
"SuperPoint: Self-Supervised Interest Point Detection and Description", CVPRW 2018).

Our implementation of the network of ``superpoint_v1.pth`` (weights name
``"superpoint-magicleap"``, from github.com/magicleap/SuperGluePretrainedNetwork,
**academic or non-commercial research use only**, see ``gluefactory_nonfree/LICENSE``).
The file is downloaded when the model is built, never at import.

Network (key names of the official file): shared encoder ``conv1a, conv1b, conv2a,
conv2b, conv3a, conv3b, conv4a, conv4b`` (3x3, channels 64, 64, 128, 128, ReLU, 2x2
max-pool after 1b, 2b and 3b), detector head ``convPa`` (3x3, 256, ReLU) and ``convPb``
(1x1, 65 logits), descriptor head ``convDa`` (3x3, 256, ReLU) and ``convDb`` (1x1, 256).
No BatchNorm.

Post-processing is SuperPoint's (see :mod:`gluefactory.models.extractors.superpoint_open`,
which shares it). Descriptor sampling: ``legacy_sampling=True`` (default, as the
weights were used by SuperGlue, LightGlue and upstream glue-factory) reproduces Magic
Leap's original interpolation, which reads the coarse map at
``(k - s/2 + 0.5) / (w s - s/2 - 0.5)`` with ``align_corners=True`` for a keypoint at
integer pixel ``k`` (centre convention). Compared with the library's exact sampling
(``legacy_sampling=False``: the feature of cell c covers pixels [8c, 8c + 8)), it reads
at a position shifted towards the top-left by ``3.5 (k - 3.5) / (8 (8 w - 4.5))``
cells: none at the first cell, about 0.44 cell (3.5 px) at the far border.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gluefactory.models.extractors.superpoint_open import _SuperPointBase
from gluefactory.models.utils.keypoints import sample_descriptors


def sample_descriptors_legacy(
    desc_map: torch.Tensor, kpts: torch.Tensor, stride: int = 8
) -> torch.Tensor:
    """Magic Leap's descriptor interpolation: (B, D, h, w), (B, N, 2) -> (B, N, D).

    ``kpts`` are in the library convention; the original code took integer pixel
    indices ``k = kpts - 0.5``. Output L2-normalised.
    """
    b, c, h, w = desc_map.shape
    k = kpts - 0.5 - stride / 2 + 0.5
    k = k / k.new_tensor([w * stride - stride / 2 - 0.5, h * stride - stride / 2 - 0.5])
    grid = (k * 2 - 1)[:, None].to(desc_map.dtype)  # (B, 1, N, 2)
    desc = F.grid_sample(desc_map, grid, mode="bilinear", align_corners=True)
    return F.normalize(desc[:, :, 0].transpose(1, 2), p=2, dim=-1)


class SuperPointNet(nn.Module):
    """(B, 1, H, W) grey image -> logits (B, 65, H/8, W/8), raw descriptors (B, D, H/8, W/8)."""

    def __init__(self, descriptor_dim: int = 256):
        super().__init__()
        c1, c2, c3, c4, c5 = 64, 64, 128, 128, 256
        for name, c_in, c_out in [
            ("conv1a", 1, c1), ("conv1b", c1, c1), ("conv2a", c1, c2),
            ("conv2b", c2, c2), ("conv3a", c2, c3), ("conv3b", c3, c3),
            ("conv4a", c3, c4), ("conv4b", c4, c4), ("convPa", c4, c5),
            ("convDa", c4, c5),
        ]:  # fmt: skip
            setattr(self, name, nn.Conv2d(c_in, c_out, 3, padding=1))
        self.convPb = nn.Conv2d(c5, 65, 1)
        self.convDb = nn.Conv2d(c5, descriptor_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.contiguous(memory_format=torch.channels_last)  # faster CPU convolutions
        for i, stage in enumerate("1234"):
            x = F.relu_(getattr(self, f"conv{stage}a")(x))
            x = F.relu_(getattr(self, f"conv{stage}b")(x))
            if i < 3:
                x = F.max_pool2d(x, 2, 2)
        logits = self.convPb(F.relu(self.convPa(x)))
        desc = self.convDb(F.relu(self.convDa(x)))
        return logits, desc


class SuperPoint(_SuperPointBase):
    """Magic Leap SuperPoint keypoints and 256-D L2-normalised descriptors.

    Same inputs, outputs and post-processing options as
    :class:`gluefactory.models.extractors.superpoint_open.SuperPointOpen`, plus
    ``legacy_sampling``.
    """

    default_conf = {
        "weights": "superpoint-magicleap",  # official file; name or path; None: random
        "legacy_sampling": True,
    }

    def _build_net(self, conf) -> nn.Module:
        return SuperPointNet(conf.descriptor_dim)

    def _sampler(self):
        if self.conf.legacy_sampling:
            return sample_descriptors_legacy
        return sample_descriptors
