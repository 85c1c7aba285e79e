"""A tiny ETH3D scene in the real layout (tests of the dataset and the download)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from gluefactory.formats import eth3d
from gluefactory.formats.depth import write_depth
from gluefactory.formats.records import Scene, View

W, H = 96, 64  # "full resolution" of the tiny scene


def write_tiny_scene(root: Path, name: str = "courtyard") -> Path:
    """3 views (A, B, C); A-B share 3 points, A-C 1, B-C 2; depth at 1/4 resolution."""
    folder = root / name
    K = np.array([[80.0, 0, W / 2], [0, 80.0, H / 2], [0, 0, 1]])
    rng = np.random.default_rng(0)
    views, obs, depths = {}, {}, {}
    ids = {"A.JPG": [1, 2, 3, 7], "B.JPG": [1, 2, 3, 5, 6], "C.JPG": [7, 5, 6, 9]}
    for i, n in enumerate(ids):
        views[n] = View.from_Rt(n, K, np.eye(3), [0.5 * i, 0, 0], (W, H))
        obs[n] = (rng.uniform(0, 60, (len(ids[n]), 2)), np.array(ids[n]))
        depths[n] = np.full((H // 4, W // 4), 2.0 + i, np.float32)
        img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        (folder / eth3d.IMAGES).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / eth3d.IMAGES / n), img)
    eth3d.write_scene(folder, Scene(name, views), obs)
    for n, d in depths.items():
        write_depth(folder / eth3d.DEPTHS / eth3d.depth_name(n), d)
    return folder
