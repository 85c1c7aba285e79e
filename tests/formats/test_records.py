"""The records and their one set of checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gluefactory.formats.records import View, check_view
from gluefactory.utils.errors import DataError

K = np.array([[100.0, 0, 32], [0, 90, 24], [0, 0, 1]])


def _rot(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_view_to_geometry():
    v = View.from_Rt("a.jpg", K, _rot(0.3), [1, 2, 3], (64, 48))
    assert v.size == (64, 48) and v.T_w2cam[3, 3] == 1
    cam, pose = v.camera(), v.pose()
    assert cam.dtype == torch.float64
    torch.testing.assert_close(cam.K, torch.from_numpy(K))
    torch.testing.assert_close(cam.size, torch.tensor([64.0, 48.0], dtype=cam.dtype))
    torch.testing.assert_close(pose.matrix(), torch.from_numpy(v.T_w2cam))
    with pytest.raises(ValueError, match="no image size"):
        View(v.name, v.K, v.T_w2cam, None).camera()


@pytest.mark.parametrize(
    "R, t, K_, size, message",
    [
        (np.eye(3) * 2, [0, 0, 0], K, (64, 48), "not a rotation"),
        (np.diag([1, 1, -1.0]), [0, 0, 0], K, (64, 48), "reflection"),
        (np.eye(3), [0, np.nan, 0], K, (64, 48), "non-finite"),
        (np.eye(3), [0, 0, 0], np.diag([-1.0, 1, 1]), (64, 48), "focal length"),
        (np.eye(3), [0, 0, 0], K, (0, 48), "size"),
    ],
)
def test_check_view_rejects(R, t, K_, size, message):
    with pytest.raises(DataError, match=f"here: .*{message}"):
        check_view(View.from_Rt("a", K_, R, t, size), "here")


def test_check_view_accepts_rounded_rotations():
    R = np.round(_rot(0.7), 6)  # what a text file with few digits holds
    assert check_view(View.from_Rt("a", K, R, [0, 0, 0], None), "x").name == "a"
