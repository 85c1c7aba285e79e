"""Real photographs (scikit-image) and copies warped by seeded homographies
(importable as ``real_pairs``): one batch of real features to overfit on."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gluefactory.datasets.base_dataset import BaseDataset
from gluefactory.geometry.homography import homography_to_center_convention


def _images():
    from skimage import data

    return [data.coffee(), data.chelsea(), data.astronaut(), data.rocket()]


class _Pairs(Dataset):
    def __init__(self, conf):
        self.conf = conf
        self.images = [
            cv2.resize(im, (conf.width, conf.height), interpolation=cv2.INTER_AREA)
            for im in _images()
        ]

    def __len__(self):
        return self.conf.num

    def __getitem__(self, idx):
        c = self.conf
        rng = np.random.default_rng(idx)
        img = self.images[idx % len(self.images)]
        w, h = c.width, c.height
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
        moved = corners + rng.uniform(-c.shift, c.shift, corners.shape).astype(
            np.float32
        ) * [w, h]
        H = cv2.getPerspectiveTransform(
            corners, moved.astype(np.float32)
        )  # corner coordinates
        warped = cv2.warpPerspective(img, homography_to_center_convention(H), (w, h))

        def view(im):
            return {
                "image": torch.from_numpy(im).permute(2, 0, 1).float() / 255,
                "image_size": torch.tensor([float(w), float(h)]),
            }

        return {
            "name": f"pair{idx}",
            "scene": "real",
            "view0": view(img),
            "view1": view(warped),
            "H_0to1": torch.tensor(H, dtype=torch.float32),
        }


class RealPairs(BaseDataset):
    default_conf = {"num": 8, "width": 320, "height": 240, "shift": 0.12}

    def _init(self, conf):
        pass

    def get_dataset(self, split):
        return _Pairs(self.conf)
