"""Shared fixtures: real photographs available offline (scikit-image's bundled data)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(int(os.environ.get("GLUEFACTORY_TEST_THREADS", "2")))


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 1x3xHxW float in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="session")
def motorcycle_pair():
    """Middlebury 2014 Motorcycle stereo pair (real photographs) with disparity and K.

    Calibration from ``skimage.data.stereo_motorcycle``'s docstring: f = 994.978 px,
    cx = 311.193, cy = 254.877, doffs = 31.086 px, baseline = 193.001 mm. The right
    camera is translated by +baseline along x (pure translation).
    """
    skd = pytest.importorskip("skimage.data")
    left, right, disp = skd.stereo_motorcycle()
    return {
        "image0": _to_tensor(left),
        "image1": _to_tensor(right),
        "disparity": torch.from_numpy(disp.astype(np.float32)),
        "f": 994.978,
        "cx": 311.193,
        "cy": 254.877,
        "doffs": 31.086,
        "baseline": 193.001,
    }


@pytest.fixture(scope="session")
def homography_pair():
    """A real photograph (scikit-image 'chelsea') and a copy warped by a known homography.

    ``H_0to1`` maps pixel coordinates of image0 to image1 in the library convention
    (pixel centres at +0.5); OpenCV warps in the centre convention, hence the shifts.
    """
    skd = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    img = skd.coffee()  # 400 x 600 RGB
    h, w = img.shape[:2]
    H = np.array([[0.9, 0.08, 30.0], [-0.05, 0.95, 20.0], [1e-4, -5e-5, 1.0]])
    T = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    H_center = np.linalg.inv(T) @ H @ T  # same map, centre convention, for cv2
    warped = cv2.warpPerspective(img, H_center, (w, h), flags=cv2.INTER_LINEAR)
    return {
        "image0": _to_tensor(img),
        "image1": _to_tensor(warped),
        "H_0to1": torch.from_numpy(H).float(),
    }


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """A fresh ``GLUEFACTORY_OUTPUTS``; returns the training root."""
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs" / "training"
