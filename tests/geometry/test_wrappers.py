"""Pose and Camera wrappers: closed-form checks and round-trip properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gluefactory.geometry.wrappers import Camera, Pose, axis_angle_to_matrix

floats = st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False)
vec3 = st.tuples(floats, floats, floats)


def _pose(aa, t) -> Pose:
    return Pose.from_aa(
        torch.tensor(aa, dtype=torch.float64), torch.tensor(t, dtype=torch.float64)
    )


def test_rotation_about_z_closed_form():
    T = Pose.from_aa(torch.tensor([0, 0, math.pi / 2]), torch.tensor([1.0, 2.0, 3.0]))
    p = torch.tensor([[1.0, 0.0, 0.0]])
    # R_z(90) (1, 0, 0) = (0, 1, 0), then + t
    torch.testing.assert_close(T.transform(p), torch.tensor([[1.0, 3.0, 3.0]]))
    rot, tr = T.magnitude()
    assert rot.item() == pytest.approx(90.0, abs=1e-3)
    assert tr.item() == pytest.approx(math.sqrt(14.0))


def test_rodrigues_matches_cv2():
    cv2 = pytest.importorskip("cv2")
    aa = np.array([0.3, -0.7, 0.2])
    R_cv, _ = cv2.Rodrigues(aa)
    R = axis_angle_to_matrix(torch.from_numpy(aa))
    np.testing.assert_allclose(R.numpy(), R_cv, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(vec3, vec3, vec3, vec3)
def test_pose_inverse_and_composition(aa0, t0, aa1, t1):
    T0, T1 = _pose(aa0, t0), _pose(aa1, t1)
    eye = torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close((T0 @ T0.inv()).matrix(), eye)
    torch.testing.assert_close((T0 @ T1).matrix(), T0.matrix() @ T1.matrix())
    p = torch.tensor([[0.5, -1.0, 4.0], [2.0, 3.0, -1.0]], dtype=torch.float64)
    torch.testing.assert_close((T0 @ T1).transform(p), T0.transform(T1.transform(p)))
    torch.testing.assert_close(T0.inv().transform(T0 @ p), p)


def test_pose_batching_and_4x4():
    aa = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    T = Pose.from_aa(aa, torch.arange(15.0).reshape(5, 3))
    assert T.shape == (5,) and len(T) == 5
    assert T[1:3].shape == (2,)
    T2 = Pose.from_4x4mat(T.matrix())
    torch.testing.assert_close(T2._data, T._data)
    R, t = T[2].numpy()
    assert R.shape == (3, 3) and t.shape == (3,)
    stacked = Pose.stack([T[0], T[4]])
    torch.testing.assert_close(stacked.R, T.R[[0, 4]])
    p = torch.randn(5, 7, 3)
    torch.testing.assert_close(T.transform(p)[3], T[3].transform(p[3]))
    assert T.to(torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="4, 4"):
        Pose.from_4x4mat(torch.eye(3))


def test_camera_from_K_keeps_real_size():
    K = torch.tensor([[500.0, 0, 300.0], [0, 510.0, 200.0], [0, 0, 1]])
    cam = Camera.from_calibration_matrix(K, (741, 500))
    torch.testing.assert_close(cam.size, torch.tensor([741.0, 500.0]))  # not 2 * c
    torch.testing.assert_close(cam.K, K)
    torch.testing.assert_close(cam.f, torch.tensor([500.0, 510.0]))
    torch.testing.assert_close(cam.c, torch.tensor([300.0, 200.0]))
    with pytest.raises(ValueError, match="image size"):
        Camera.from_calibration_matrix(K, None)


def test_camera_project_unproject_roundtrip_batched():
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[500.0, 0, 320.0], [0, 500.0, 240.0], [0, 0, 1]]).expand(3, 3, 3)
    cam = Camera.from_calibration_matrix(K, torch.tensor([640.0, 480.0]))
    assert cam.shape == (3,)
    p2d = torch.rand(3, 20, 2, generator=g) * torch.tensor([640.0, 480.0])
    depth = torch.rand(3, 20, generator=g) * 10 + 0.5
    p3d = cam.unproject(p2d, depth)
    torch.testing.assert_close(p3d[..., 2], depth)
    proj, valid = cam.project(p3d)
    assert valid.all()
    torch.testing.assert_close(proj, p2d, atol=1e-3, rtol=0)
    assert cam.in_image(proj).all()
    _, valid = cam.project(-p3d)
    assert not valid.any()  # behind the camera


def test_camera_principal_point_projects_to_c():
    cam = Camera.from_params(640, 480, 400, 400, 320, 240)
    p, _ = cam.project(torch.tensor([[0.0, 0.0, 2.0]]))
    torch.testing.assert_close(p, torch.tensor([[320.0, 240.0]]))


def test_camera_scale_is_exact_in_library_convention():
    """Resizing by s maps x -> s x: a 3D point projects to s times its pixel."""
    cam = Camera.from_params(640, 480, 400, 410, 321.3, 239.1, dtype=torch.float64)
    p3d = torch.tensor([[0.3, -0.2, 2.0], [1.0, 0.5, 5.0]], dtype=torch.float64)
    p, _ = cam.project(p3d)
    for s in (0.5, torch.tensor([0.25, 0.5], dtype=torch.float64)):
        small = cam.scale(s)
        ps, _ = small.project(p3d)
        sv = torch.as_tensor(s, dtype=torch.float64)
        torch.testing.assert_close(ps, p * sv)
        torch.testing.assert_close(small.size, cam.size * sv)


def test_camera_crop():
    cam = Camera.from_params(640, 480, 400, 400, 320, 240)
    crop = cam.crop((100, 50), (200, 100))
    torch.testing.assert_close(crop.c, torch.tensor([220.0, 190.0]))
    torch.testing.assert_close(crop.size, torch.tensor([200.0, 100.0]))
