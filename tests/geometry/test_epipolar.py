"""Epipolar geometry: closed-form distances, OpenCV parity, pose errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gluefactory.geometry.epipolar import (
    E_to_F,
    F_to_E,
    T_to_E,
    T_to_F,
    relative_pose_error,
    sampson_distance,
    skew,
    sym_epipolar_distance,
)
from gluefactory.geometry.wrappers import Camera, Pose


def _random_scene(seed=0, n=50):
    g = torch.Generator().manual_seed(seed)
    T = Pose.from_aa(
        torch.randn(3, generator=g, dtype=torch.float64) * 0.2,
        torch.randn(3, generator=g, dtype=torch.float64),
    )
    cam0 = Camera.from_params(640, 480, 500, 520, 320, 240, dtype=torch.float64)
    cam1 = Camera.from_params(800, 600, 700, 690, 410, 290, dtype=torch.float64)
    p3d = torch.randn(n, 3, generator=g, dtype=torch.float64) + torch.tensor(
        [0, 0, 8.0], dtype=torch.float64
    )
    x0, _ = cam0.project(p3d)
    x1, _ = cam1.project(T.transform(p3d))
    return T, cam0, cam1, x0, x1


def test_skew_is_cross_product():
    v, w = torch.randn(2, 5, 3).unbind(0)
    torch.testing.assert_close(
        (skew(v) @ w[..., None])[..., 0], torch.cross(v, w, dim=-1)
    )


def test_pure_x_translation_distance_is_row_difference():
    """t = (1, 0, 0), R = I: E = [t]x and the distance is |y0 - y1| (normalised)."""
    T = Pose.from_Rt(torch.eye(3), torch.tensor([1.0, 0.0, 0.0]))
    E = T_to_E(T)
    p0 = torch.tensor([[0.1, 0.2], [-0.3, 0.5]])
    p1 = torch.tensor([[0.7, 0.2], [0.4, 0.1]])
    d = sym_epipolar_distance(p0, p1, E)
    torch.testing.assert_close(d, torch.tensor([0.0, 0.4]))
    torch.testing.assert_close(sym_epipolar_distance(p0, p1, E, squared=True), d**2)


def test_true_correspondences_have_zero_distance():
    T, cam0, cam1, x0, x1 = _random_scene()
    E = T_to_E(T)
    d = sym_epipolar_distance(cam0.image2cam(x0), cam1.image2cam(x1), E)
    assert d.max() < 1e-12
    F = T_to_F(cam0, cam1, T)
    assert sym_epipolar_distance(x0, x1, F).max() < 1e-9
    assert sampson_distance(x0, x1, F).max() < 1e-9
    torch.testing.assert_close(F_to_E(F, cam0.K, cam1.K), E)


def test_points_shifted_off_the_line():
    """Moving x1 along the epipolar-line normal by 2 px gives distance 2 in image 1."""
    T, cam0, cam1, x0, x1 = _random_scene(1)
    F = T_to_F(cam0, cam1, T)
    line = torch.cat([x0, torch.ones_like(x0[:, :1])], -1) @ F.T
    normal = line[:, :2] / line[:, :2].norm(dim=-1, keepdim=True)
    x1s = x1 + 2.0 * normal
    # distance to the line in image 1 is exactly 2; the symmetric one averages both
    num = (torch.cat([x1s, torch.ones_like(x1s[:, :1])], -1) * line).sum(-1).abs()
    torch.testing.assert_close(
        num / line[:, :2].norm(dim=-1), torch.full((50,), 2.0, dtype=torch.float64)
    )
    d = sym_epipolar_distance(x0, x1s, F)
    assert (d > 0.5).all()


def test_pairwise_matches_elementwise():
    T, cam0, cam1, x0, x1 = _random_scene(2, n=10)
    F = T_to_F(cam0, cam1, T)
    D = sym_epipolar_distance(x0, x1[:7], F, pairwise=True)
    assert D.shape == (10, 7)
    for j in range(7):
        torch.testing.assert_close(
            D[:, j], sym_epipolar_distance(x0, x1[j].expand(10, 2), F)
        )


def test_sampson_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    T, cam0, cam1, x0, x1 = _random_scene(3, n=5)
    F = T_to_F(cam0, cam1, T)
    x1n = x1 + torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    ours = sampson_distance(x0, x1n, F, squared=True)
    for i in range(5):
        a = np.array([*x0[i].tolist(), 1.0])[:, None]
        b = np.array([*x1n[i].tolist(), 1.0])[:, None]
        ref = cv2.sampsonDistance(a, b, F.numpy())
        assert ours[i].item() == pytest.approx(ref, rel=1e-9)


def test_E_to_F_inverse():
    T, cam0, cam1, *_ = _random_scene(4)
    E = T_to_E(T)
    torch.testing.assert_close(F_to_E(E_to_F(E, cam0.K, cam1.K), cam0.K, cam1.K), E)


def test_relative_pose_error_known_rotations():
    T = Pose.from_aa(torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]))
    R10 = Pose.from_aa(torch.tensor([0.0, 0.0, math.radians(10)]), torch.zeros(3)).R
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    t_err, r_err = relative_pose_error(T, R10, torch.tensor([c, s, 0.0]))
    assert r_err.item() == pytest.approx(10.0, abs=1e-2)
    assert t_err.item() == pytest.approx(30.0, abs=1e-3)
    # sign ambiguity: the opposite direction counts as 0, 150 deg as 30
    t_err, _ = relative_pose_error(T, torch.eye(3), torch.tensor([-2.0, 0.0, 0.0]))
    assert t_err.item() == pytest.approx(0.0, abs=1e-3)
    t_err, _ = relative_pose_error(T, torch.eye(3), torch.tensor([-c, s, 0.0]))
    assert t_err.item() == pytest.approx(30.0, abs=1e-3)
    # pure rotation GT: translation error ignored below the threshold
    T0 = Pose.from_Rt(torch.eye(3), torch.zeros(3))
    t_err, _ = relative_pose_error(T0, torch.eye(3), torch.tensor([0.0, 1, 0]), 1e-3)
    assert t_err.item() == 0.0
