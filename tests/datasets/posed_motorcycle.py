"""Helper (not a test module): a posed_images tree of the real Middlebury Motorcycle pair.

Loaded by path (importlib.util) from the tests that need it, since test modules
are imported in importlib mode and cannot import each other.
"""

from __future__ import annotations

import cv2
import h5py
import numpy as np


def write_posed_motorcycle(root, m):
    """posed_images tree of the Motorcycle pair: depth (m) from the real disparity for the
    left image and forward-splatted (z-buffer) for the right one."""
    scene = root / "motorcycle"
    (scene / "images").mkdir(parents=True)
    (scene / "depths").mkdir()
    left = (m["image0"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    right = (m["image1"][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    cv2.imwrite(str(scene / "images" / "left.png"), left[..., ::-1])
    cv2.imwrite(str(scene / "images" / "right.png"), right[..., ::-1])
    disp = m["disparity"].numpy()
    h, w = disp.shape
    ok = np.isfinite(disp)
    depth0 = np.where(
        ok, m["baseline"] * m["f"] / (np.where(ok, disp, 0) + m["doffs"]), 0
    )
    depth0 = (depth0 / 1000).astype(np.float32)  # metres
    depth1 = np.full((h, w), np.inf, np.float32)
    v, u = np.nonzero(ok)
    ur = np.round(u - disp[v, u]).astype(int)  # x_r = x_l - d (pixel centres cancel)
    keep = (ur >= 0) & (ur < w)
    np.minimum.at(depth1, (v[keep], ur[keep]), depth0[v[keep], u[keep]])
    depth1[~np.isfinite(depth1)] = 0
    for name, d in (("left", depth0), ("right", depth1)):
        with h5py.File(scene / "depths" / f"{name}.h5", "w") as f:
            f.create_dataset("depth", data=d)
    f, cx, cy, b = m["f"], m["cx"], m["cy"], m["baseline"] / 1000
    R = "1 0 0 0 1 0 0 0 1"
    (scene / "views.txt").write_text(
        f"# name R t MODEL W H params\nleft.png {R} 0 0 0 PINHOLE {w} {h} {f} {f} {cx} {cy}\n"
        f"right.png {R} {-b} 0 0 PINHOLE {w} {h} {f} {f} {cx + m['doffs']} {cy}\n"
    )
    (scene / "pairs.txt").write_text("left.png right.png\n")
    return depth0
