"""A tiny HPatches-like dataset for the evaluation tests: real photos warped by known H.

Follows the dataset item contract (PLAN.md item 6): ``view0/1`` with ``image``,
``image_size``, ``scales``, ``original_image_size``, ``name``; ``H_0to1`` in the RESIZED
images' pixels and the library's +0.5 convention. Sequence ``s`` holds image 1 (a
scikit-image photograph) and ``images_per_sequence - 1`` warps of it; pairs are
1 -> 2..k, so image 1 is shared by all pairs of a sequence (as in HPatches).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gluefactory.datasets.base_dataset import BaseDataset
from gluefactory.geometry.homography import rescale_homography
from gluefactory.utils.image import ImagePreprocessor, numpy_image_to_torch

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")


def _shift(d: float) -> np.ndarray:
    return np.array([[1, 0, d], [0, 1, d], [0, 0, 1.0]])


def random_homography(
    rng: np.random.Generator, w: int, h: int, strength: float
) -> np.ndarray:
    """A mild perspective warp about the image centre (+0.5 convention)."""
    c = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1.0]])
    a = rng.uniform(-1, 1, 6) * strength
    A = np.array(
        [
            [1 + a[0], a[1], a[4] * w * 0.1],
            [a[2], 1 + a[3], a[5] * h * 0.1],
            [0, 0, 1.0],
        ]
    )
    A[2, :2] = rng.uniform(-1, 1, 2) * strength * 1e-3
    return c @ A @ np.linalg.inv(c)


class _Sequences(Dataset):
    def __init__(self, conf):
        from skimage import data as skd

        self.conf = conf
        self.prep = ImagePreprocessor(conf.preprocessing)
        rng = np.random.default_rng(conf.seed)
        self.items = []
        for s in range(conf.sequences):
            photo = PHOTOS[s % len(PHOTOS)]
            img = getattr(skd, photo)()
            if img.ndim == 2:
                img = np.stack([img] * 3, -1)
            img = img[..., :3]
            h, w = img.shape[:2]
            for j in range(2, conf.images_per_sequence + 1):
                H = random_homography(rng, w, h, conf.strength)
                H_center = np.linalg.inv(_shift(0.5)) @ H @ _shift(0.5)
                warped = cv2.warpPerspective(
                    img, H_center, (w, h), flags=cv2.INTER_LINEAR
                )
                self.items.append((f"seq{s}_{photo}", img, warped, H, j))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        scene, img0, img1, H, j = self.items[i]
        v0 = self.prep(numpy_image_to_torch(img0))
        v1 = self.prep(numpy_image_to_torch(img1))
        H = torch.from_numpy(H).float()
        H_resized = rescale_homography(H, v0["scales"], v1["scales"])
        return {
            "name": f"{scene}/1_{j}",
            "scene": scene,
            "view0": {**v0, "name": f"{scene}/1"},
            "view1": {**v1, "name": f"{scene}/{j}"},
            "H_0to1": H_resized,
            "H_0to1_original": H,
        }


class ToyHomographies(BaseDataset):
    default_conf = {
        "preprocessing": ImagePreprocessor.default_conf,
        "sequences": 2,
        "images_per_sequence": 3,
        "strength": 0.08,
    }

    def _init(self, conf):
        pass

    def get_dataset(self, split):
        return _Sequences(self.conf)
