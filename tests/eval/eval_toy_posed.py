"""A tiny posed dataset for the evaluation tests: the Middlebury Motorcycle stereo pair.

Follows the dataset item contract (PLAN.md item 6): views with ``image``, ``camera`` (of
the RESIZED image), ``depth`` (resized, 0 = invalid), ``scales``...; ``T_0to1`` and
``T_1to0``. Calibration from ``skimage.data.stereo_motorcycle``'s docstring (principal
points +0.5 for the library convention); depth = baseline * f / (disparity + doffs).
Pairs: left -> right and right -> left.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gluefactory.datasets.base_dataset import BaseDataset
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.utils.image import ImagePreprocessor, numpy_image_to_torch

F_PX, CX, CY, DOFFS, BASELINE_M = 994.978, 311.193, 254.877, 31.086, 0.193001


class _Pairs(Dataset):
    def __init__(self, conf):
        from skimage.data import stereo_motorcycle

        self.prep = ImagePreprocessor(conf.preprocessing)
        left, right, disp = stereo_motorcycle()
        h, w = left.shape[:2]
        depth = np.where(np.isfinite(disp), BASELINE_M * F_PX / (disp + DOFFS), 0.0)
        # the right view's depth: same surface, seen at x - disparity
        depth_r = np.zeros_like(depth)
        ys, xs = np.nonzero(np.isfinite(disp))
        xr = np.round(xs - disp[ys, xs]).astype(int)
        ok = (xr >= 0) & (xr < w)
        depth_r[ys[ok], xr[ok]] = depth[ys[ok], xs[ok]]
        K0 = torch.tensor([[F_PX, 0, CX + 0.5], [0, F_PX, CY + 0.5], [0, 0, 1.0]])
        K1 = K0.clone()
        K1[0, 2] += DOFFS
        cams = [Camera.from_calibration_matrix(K, (w, h)) for K in (K0, K1)]
        T_lr = Pose.from_Rt(torch.eye(3), torch.tensor([-BASELINE_M, 0.0, 0.0]))
        views = [
            (left, cams[0], depth, "left"),
            (right, cams[1], depth_r, "right"),
        ]
        self.items = [
            (views[0], views[1], T_lr),
            (views[1], views[0], T_lr.inv()),
        ]

    def __len__(self):
        return len(self.items)

    def _view(self, v):
        img, cam, depth, name = v
        out = self.prep(numpy_image_to_torch(img))
        d = torch.from_numpy(depth).float()[None, None]
        w, h = (int(x) for x in out["image_size"])
        out["depth"] = F.interpolate(d, size=(h, w), mode="nearest")[0, 0]
        out["camera"] = cam.scale(out["scales"])
        out["name"] = name
        return out

    def __getitem__(self, i):
        v0, v1, T = self.items[i]
        return {
            "name": f"motorcycle/{v0[3]}-{v1[3]}",
            "scene": "motorcycle",
            "view0": self._view(v0),
            "view1": self._view(v1),
            "T_0to1": T,
            "T_1to0": T.inv(),
        }


class ToyPosed(BaseDataset):
    default_conf = {
        "preprocessing": ImagePreprocessor.default_conf,
        # keys of the posed_images format, accepted (and unused) so that the
        # megadepth1500 benchmark's data defaults apply unchanged
        "root": "",
        "image_dir": None,
        "depth_dir": None,
        "views": None,
        "view_groups": None,
        "depth_format": None,
        "scene_list": None,
    }

    def _init(self, conf):
        pass

    def get_dataset(self, split):
        return _Pairs(self.conf)
