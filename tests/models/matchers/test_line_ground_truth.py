"""use_lines in matchers.homography_matcher and matchers.depth_matcher."""

from __future__ import annotations

import pytest
import torch

from gluefactory.geometry.homography import warp_lines
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.models import get_model
from gluefactory.utils.data import MissingDataError
from gluefactory.utils.errors import ConfigError


def _lines():
    lines0 = torch.tensor(
        [[[[100.0, 100], [300, 120]], [[50, 400], [60, 250]], [[0, 0], [0, 0]]]]
    )
    mask0 = torch.tensor([[True, True, False]])
    return lines0, mask0


def test_homography_matcher_labels_points_and_lines():
    H = torch.tensor([[[0.95, 0.05, 20.0], [-0.02, 1.0, 10.0], [1e-4, 0, 1.0]]])
    lines0, mask0 = _lines()
    lines1 = warp_lines(lines0, H)[:, [1, 0]]
    kpts0 = torch.tensor([[[10.0, 10.0], [200.0, 300.0]]])
    data = {
        "keypoints0": kpts0,
        "keypoints1": warp_lines(kpts0[:, None], H)[:, 0],
        "lines0": lines0,
        "lines1": lines1,
        "line_mask0": mask0,
        "H_0to1": H,
        "view0": {"image_size": torch.tensor([[640.0, 480.0]])},
        "view1": {"image": torch.zeros(1, 3, 480, 640)},
    }
    gt = get_model("matchers.homography_matcher")({"use_lines": True})(data)
    assert gt["gt_matches0"].tolist() == [[0, 1]]
    assert gt["gt_line_matches0"].tolist() == [[1, 0, -2]]
    assert gt["gt_line_matches1"].tolist() == [[1, 0]]
    assert gt["gt_line_assignment"].shape == (1, 3, 2)
    lines_only = get_model("matchers.homography_matcher")(
        {"use_lines": True, "use_points": False}
    )
    data.pop("keypoints0"), data.pop("keypoints1")
    out = lines_only(data)
    assert "gt_matches0" not in out
    assert torch.equal(out["gt_line_matches0"], gt["gt_line_matches0"])


def test_homography_matcher_line_inputs_are_checked():
    model = get_model("matchers.homography_matcher")({"use_lines": True})
    with pytest.raises(MissingDataError, match="lines0"):
        model({"keypoints0": 0, "keypoints1": 0, "H_0to1": 0})
    with pytest.raises(ConfigError, match="both false"):
        get_model("matchers.homography_matcher")({"use_points": False})
    with pytest.raises(ConfigError, match="overlap_th"):
        get_model("matchers.homography_matcher")({"overlap_th": 2})


def test_depth_matcher_labels_lines():
    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    cam = Camera.from_calibration_matrix(K, (640, 480))[None]
    T = Pose.from_Rt(torch.eye(3), torch.tensor([-0.1, 0, 0.0]))[None]
    depth = torch.full((1, 480, 640), 2.0)
    lines0, mask0 = _lines()
    lines1 = lines0[:, :2] - torch.tensor([25.0, 0])
    view = {"camera": cam, "depth": depth}
    data = {"lines0": lines0, "lines1": lines1, "line_mask0": mask0, "T_0to1": T}
    model = get_model("matchers.depth_matcher")(
        {"use_lines": True, "use_points": False}
    )
    gt = model({**data, "view0": view, "view1": view})
    assert gt["gt_line_matches0"].tolist() == [[0, 1, -2]]
    with pytest.raises(MissingDataError, match="view1.depth"):
        model({**data, "view0": view, "view1": {"camera": cam}})
