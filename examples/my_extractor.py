"""A tiny local-feature extractor living OUTSIDE the package, to train LightGlue on it.

Use it by dotted module path, e.g. ``model.extractor.name=examples.my_extractor`` (run
from the repository root, or put this folder on ``PYTHONPATH``): Glue Factory imports the
module and takes its unique :class:`~gluefactory.models.base_model.BaseModel` subclass.
See docs/training.md for the walk-through.

Detector: Harris corners (structure tensor of Sobel gradients, Gaussian window), strict
local maxima in a (2 r + 1)^2 window, the ``max_num_keypoints`` strongest.
Descriptor: a 128-D gradient-orientation histogram (4 x 4 cells of ``cell_size`` px,
8 soft orientation bins, as in SIFT but without scale or rotation invariance), square
rooted and L2-normalised.

The extractor contract (what LightGlue and the ground truth rely on):

- ``keypoints`` (B, N, 2): (x, y) in pixels **of the image given in ``data["image"]``**
  (the warped patch in homography training: points are detected on it, never warped
  afterwards), pixel centres at +0.5 (the centre of pixel (i, j) is (i + 0.5, j + 0.5));
- ``keypoint_scores`` (B, N) and ``descriptors`` (B, N, D);
- same N for every image of a batch: with ``force_num_keypoints`` the output is cut or
  padded to exactly ``max_num_keypoints`` with random in-image points of score 0, and
  ``keypoint_mask`` (B, N) bool says which are real (True). The pipeline passes it on as
  ``keypoint_mask0/1``;
- ``describe(conf)`` declares the descriptor size (and whether scales / orientations are
  output) so that a matcher can be checked against it before any weights are loaded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gluefactory.models.base_model import BaseModel


def _grey(image: torch.Tensor) -> torch.Tensor:
    if image.shape[1] == 3:
        w = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        image = (image * w).sum(1, keepdim=True)
    return image


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(
        F.pad(x, (r, r, 0, 0), mode="reflect"),
        k.view(1, 1, 1, -1).repeat(c, 1, 1, 1),
        groups=c,
    )
    return F.conv2d(
        F.pad(x, (0, 0, r, r), mode="reflect"),
        k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
        groups=c,
    )


class HarrisHOG(BaseModel):
    default_conf = {
        "max_num_keypoints": 1024,
        "force_num_keypoints": False,
        "nms_radius": 3,
        "harris_k": 0.04,
        "window_sigma": 1.5,
        "detection_threshold": 1e-6,  # on the Harris response of a [0, 1] image
        "remove_borders": 12,
        "cell_size": 4,
        "seed": None,  # padding points: None = torch's global generator
        "trainable": False,
    }
    required_data_keys = ["image"]

    @classmethod
    def describe(cls, conf=None) -> dict:
        return {"descriptor_dim": 128, "scales": False, "orientations": False}

    def _init(self, conf):
        sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8
        self.register_buffer(
            "sobel", torch.stack([sobel, sobel.T])[:, None], persistent=False
        )

    def _forward(self, data: dict) -> dict:
        image = _grey(data["image"].float())  # (B, 1, H, W) in [0, 1]
        b, _, h, w = image.shape
        g = F.conv2d(
            F.pad(image, (1, 1, 1, 1), mode="replicate"), self.sobel
        )  # (B, 2, H, W)
        gx, gy = g[:, :1], g[:, 1:]
        s = _gaussian(torch.cat([gx * gx, gy * gy, gx * gy], 1), self.conf.window_sigma)
        det = s[:, 0] * s[:, 1] - s[:, 2] ** 2
        response = det - self.conf.harris_k * (s[:, 0] + s[:, 1]) ** 2  # (B, H, W)
        r = self.conf.nms_radius
        local_max = response == F.max_pool2d(response[:, None], 2 * r + 1, 1, r)[:, 0]
        keep = local_max & (response > self.conf.detection_threshold)
        m = self.conf.remove_borders
        keep[:, :m], keep[:, h - m :], keep[:, :, :m], keep[:, :, w - m :] = (
            False,
            False,
            False,
            False,
        )
        dense = self._orientation_cells(gx, gy)  # (B, 8, H, W)
        n = self.conf.max_num_keypoints
        kpts, scores, masks = [], [], []
        for i in range(b):
            y, x = torch.nonzero(keep[i], as_tuple=True)
            sc = response[i, y, x]
            if n is not None and 0 < n < len(sc):
                sc, idx = torch.topk(sc, n)
                x, y = x[idx], y[idx]
            k = torch.stack([x, y], -1).float() + 0.5  # pixel centres (+0.5 convention)
            mask = torch.ones(len(k), dtype=torch.bool, device=k.device)
            if self.conf.force_num_keypoints and len(k) < n:
                gen = (
                    None
                    if self.conf.seed is None
                    else torch.Generator().manual_seed(self.conf.seed)
                )
                extra = (
                    torch.rand(n - len(k), 2, generator=gen).to(k)
                    * k.new_tensor([w - 1, h - 1])
                    + 0.5
                )
                k = torch.cat([k, extra])
                sc = torch.cat([sc, sc.new_zeros(len(extra))])
                mask = torch.cat([mask, mask.new_zeros(len(extra))])
            kpts.append(k)
            scores.append(sc)
            masks.append(mask)
        if len({len(k) for k in kpts}) > 1:
            raise ValueError(
                "HarrisHOG: images of the batch have different keypoint counts; set "
                "force_num_keypoints: true (with max_num_keypoints) to batch them."
            )
        kpts, scores = torch.stack(kpts), torch.stack(scores)
        pred = {
            "keypoints": kpts,
            "keypoint_scores": scores,
            "descriptors": self._describe(dense, kpts, (w, h)),
        }
        if self.conf.force_num_keypoints:
            pred["keypoint_mask"] = torch.stack(masks)
        return pred

    def _orientation_cells(self, gx, gy) -> torch.Tensor:
        """(B, 8, H, W): gradient magnitude in 8 soft orientation bins, summed over a
        cell (box filter of ``cell_size``)."""
        mag = torch.sqrt(gx**2 + gy**2 + 1e-12)
        ang = torch.atan2(gy, gx) % (2 * math.pi)
        pos = ang / (2 * math.pi) * 8
        bins = torch.arange(8, device=gx.device, dtype=gx.dtype).view(1, 8, 1, 1)
        d = torch.remainder(pos - bins + 4, 8) - 4  # signed distance to each bin centre
        hist = mag * (1 - d.abs()).clamp(min=0)
        c = self.conf.cell_size
        return F.avg_pool2d(hist, c, stride=1, padding=c // 2, count_include_pad=False)

    def _describe(self, dense, kpts, size) -> torch.Tensor:
        """(B, N, 128): the 4 x 4 cells around each keypoint, 8 bins each."""
        b, n = kpts.shape[:2]
        c = self.conf.cell_size
        off = (torch.arange(4, dtype=kpts.dtype, device=kpts.device) - 1.5) * c
        oy, ox = torch.meshgrid(off, off, indexing="ij")
        grid = kpts[:, :, None] + torch.stack([ox, oy], -1).view(1, 1, 16, 2)
        wh = kpts.new_tensor(size)
        norm = grid / wh * 2 - 1  # align_corners=False sampling at pixel coordinates
        s = F.grid_sample(
            dense, norm, mode="bilinear", align_corners=False
        )  # (B, 8, N, 16)
        desc = s.permute(0, 2, 3, 1).reshape(b, n, 128)
        desc = torch.sqrt(desc.clamp(min=0))
        return F.normalize(desc, dim=-1)
