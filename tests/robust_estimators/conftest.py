"""Synthetic correspondences with known models for the robust estimator tests.

Deterministic (seeded numpy generators). Outliers replace the view-1 point of a random
30% of the matches by a uniform point of image 1; Gaussian noise is added to both views.
Line matches (for the point+line estimator) are corrupted the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gluefactory.geometry.wrappers import Camera, Pose

#: ground-truth homography of the tests (library convention), image 640 x 480
H_GT = np.array([[0.9, 0.08, 30.0], [-0.05, 0.95, 20.0], [1e-4, -5e-5, 1.0]])
SIZE_H = (640, 480)
#: relative-pose scene: MegaDepth-1500-like resolution (1600 x 1200, f = 1200 px)
SIZE_POSE = (1600, 1200)


def rotation(axis, degrees: float) -> np.ndarray:
    """Rotation matrix (Rodrigues) of ``degrees`` about ``axis``."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    th = np.deg2rad(degrees)
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def warp(H: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.c_[p, np.ones(len(p))] @ H.T
    return q[:, :2] / q[:, 2:]


def _corrupt(rng, p0, p1, size, outliers, noise):
    n = len(p0)
    p0 = p0 + rng.normal(0, noise, p0.shape)
    p1 = p1 + rng.normal(0, noise, p1.shape)
    idx = rng.choice(n, int(round(outliers * n)), replace=False)
    p1[idx] = rng.uniform([0, 0], size, (len(idx), 2))
    inl = np.ones(n, bool)
    inl[idx] = False
    return p0, p1, inl


def homography_problem(seed=0, n=200, outliers=0.3, noise=0.5, H=H_GT, size=SIZE_H):
    """Matches (N, 2) of points uniform in image 0 and their images by H, corrupted.

    Returns a dict with float32 tensors ``m_kpts0``/``m_kpts1`` and numpy ``p0``,
    ``p1``, ``H``, ``size`` and the true inlier mask ``inl``.
    """
    rng = np.random.default_rng(seed)
    p0 = rng.uniform([0, 0], size, (n, 2))
    p0, p1, inl = _corrupt(rng, p0, warp(H, p0), size, outliers, noise)
    return {
        "m_kpts0": torch.from_numpy(p0).float(),
        "m_kpts1": torch.from_numpy(p1).float(),
        "p0": p0,
        "p1": p1,
        "H": H,
        "size": size,
        "inl": inl,
    }


def line_problem(
    seed=0,
    m=200,
    outliers=0.3,
    noise=0.5,
    lengths=(50.0, 250.0),
    H=H_GT,
    size=SIZE_H,
):
    """Matched segments (M, 2, 2) on random lines of image 0 and their images by H.

    Segments start uniformly in image 0 with a uniform direction and a length in
    ``lengths``. The segment of image 1 is another piece of the mapped line (each
    endpoint slides by up to 20 % of the length), as a detector cuts a line elsewhere in
    the other image. Outliers replace the image-1 segment of a random share by a
    uniform segment of image 1; Gaussian noise moves every endpoint in both views.
    Returns float64 tensors ``m_lines0``/``m_lines1``, empty ``m_kpts0``/``m_kpts1``,
    ``H``, ``size`` and the true inlier mask ``line_inl``.
    """
    rng = np.random.default_rng(seed + 1000)
    a = rng.uniform([0, 0], size, (m, 2))
    angle = rng.uniform(0, np.pi, m)
    length = rng.uniform(*lengths, m)
    b = a + length[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    s0 = np.stack([a, b], 1)
    t = rng.uniform(-0.2, 0.2, (m, 2)) + [0.0, 1.0]
    s1 = warp(H, (a[:, None] + t[..., None] * (b - a)[:, None]).reshape(-1, 2))
    s0 = s0 + rng.normal(0, noise, s0.shape)
    s1 = s1.reshape(m, 2, 2) + rng.normal(0, noise, (m, 2, 2))
    idx = rng.choice(m, int(round(outliers * m)), replace=False)
    s1[idx] = rng.uniform([0, 0], size, (len(idx), 2, 2))
    inl = np.ones(m, bool)
    inl[idx] = False
    return {
        "m_kpts0": torch.zeros(0, 2, dtype=torch.float64),
        "m_kpts1": torch.zeros(0, 2, dtype=torch.float64),
        "m_lines0": torch.from_numpy(s0),
        "m_lines1": torch.from_numpy(s1),
        "H": H,
        "size": size,
        "line_inl": inl,
    }


def pose_problem(
    seed=0,
    n=200,
    outliers=0.3,
    noise=0.5,
    R=None,
    t=(-1.0, 0.1, 0.2),
    f0=1200.0,
    f1=1200.0,
    size=SIZE_POSE,
):
    """Points uniform in image 0 at depths in [2, 6], seen by a second camera (R, t).

    ``T_0to1`` maps camera 0 to camera 1. Returns float32 ``m_kpts0``/``m_kpts1``,
    cameras ``camera0``/``camera1``, the GT ``T_0to1`` (float64) and the inlier mask.
    """
    rng = np.random.default_rng(seed)
    R = rotation([0.1, 1.0, 0.2], 10.0) if R is None else np.asarray(R, float)
    t = np.asarray(t, float)
    w, h = size
    K0 = np.array([[f0, 0, w / 2], [0, f0, h / 2], [0, 0, 1]])
    K1 = np.array([[f1, 0, w / 2 + 7], [0, f1 * 1.01, h / 2 - 5], [0, 0, 1]])
    p0 = rng.uniform([0, 0], size, (n, 2))
    z = rng.uniform(2, 6, n)
    X = np.c_[(p0 - K0[:2, 2]) / f0, np.ones(n)] * z[:, None]
    X1 = X @ R.T + t
    p1 = X1 @ K1.T
    p1 = p1[:, :2] / p1[:, 2:]
    p0, p1, inl = _corrupt(rng, p0, p1, size, outliers, noise)
    size_t = torch.tensor(size, dtype=torch.float32)
    return {
        "m_kpts0": torch.from_numpy(p0).float(),
        "m_kpts1": torch.from_numpy(p1).float(),
        "camera0": Camera.from_calibration_matrix(torch.from_numpy(K0).float(), size_t),
        "camera1": Camera.from_calibration_matrix(torch.from_numpy(K1).float(), size_t),
        "T_0to1": Pose.from_Rt(torch.from_numpy(R), torch.from_numpy(t)),
        "inl": inl,
    }


@pytest.fixture
def make_homography_problem():
    return homography_problem


@pytest.fixture
def make_line_problem():
    return line_problem


@pytest.fixture
def make_pose_problem():
    return pose_problem
