"""On a room of the built-in posed set, line ground truth from the depth map agrees with
the one from the exact rendered geometry (each sample ray-cast into the scene)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gluefactory.datasets.sources import builtin_posed as posed
from gluefactory.datasets.sources.builtin_render import _intersect, look_at, render
from gluefactory.geometry.coordinates import in_image
from gluefactory.geometry.gt_generation import (
    gt_line_matches,
    gt_line_matches_from_pose_depth,
)
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.models import get_model


def _exact_projector(quads, K, cam_a, cam_b, size):
    """Samples of view a -> their exact projection into view b: the ray through each
    sample hits the scene (valid) at a 3D point projected into b (visible if in front
    and inside), as the renderer defines the depth maps."""
    (Ra, ta), (Rb, tb) = cam_a, cam_b

    def fn(pts: torch.Tensor):
        p = pts[0].numpy()
        cam = np.concatenate([p, np.ones((len(p), 1))], 1) @ np.linalg.inv(K).T
        center, dirs = -Ra.T @ ta, cam @ Ra
        depth, hit, _, _ = _intersect(quads, center, dirs)
        world = center + depth[:, None] * dirs
        xb = world @ Rb.T + tb
        with np.errstate(invalid="ignore", divide="ignore"):
            proj = (xb @ K.T)[:, :2] / xb[:, 2:]
        valid = torch.from_numpy(hit >= 0)
        proj = torch.from_numpy(np.where(valid[:, None], proj, 0.0))
        visible = valid & torch.from_numpy(xb[:, 2] > 1e-6) & in_image(proj, size)
        return proj[None], valid[None], visible[None]

    return fn


@pytest.mark.slow
def test_depth_and_exact_line_ground_truth_agree():
    rng = np.random.default_rng(3)
    quads = posed.room_quads(rng)
    ((R0, t0),) = posed.room_cameras(rng, 1)
    center0 = -R0.T @ t0
    # a second camera 0.4 m to the side, looking at the same point, slightly rolled
    target = center0 + R0.T @ np.array([0.0, 0.0, 4.0])
    R1, t1 = look_at(center0 + R0.T @ np.array([0.4, 0.05, 0.1]), target, 0.05)
    w, h = posed.IMAGE_SIZE
    K = np.array([[posed.FOCAL, 0, w / 2], [0, posed.FOCAL, h / 2], [0, 0, 1.0]])
    views = [
        render(quads, K, R, t, w, h, supersample=1) for R, t in ((R0, t0), (R1, t1))
    ]
    lsd = get_model("lines.lsd")({"max_num_lines": 250})
    lines = [
        lsd({"image": torch.from_numpy(img).permute(2, 0, 1)[None]})["lines"].double()
        for img, _ in views
    ]
    cam = Camera.from_calibration_matrix(torch.from_numpy(K), (w, h))[None]
    T0 = Pose.from_Rt(torch.from_numpy(R0), torch.from_numpy(t0))
    T1 = Pose.from_Rt(torch.from_numpy(R1), torch.from_numpy(t1))
    T_0to1 = (T1 @ T0.inv())[None]
    depths = [torch.from_numpy(d.astype(np.float64))[None] for _, d in views]
    from_depth = gt_line_matches_from_pose_depth(
        lines[0], lines[1], cam, cam, T_0to1, depths[0], depths[1]
    )
    size = torch.tensor([w, h], dtype=torch.float64)
    exact = gt_line_matches(
        lines[0],
        lines[1],
        _exact_projector(quads, K, (R0, t0), (R1, t1), size),
        _exact_projector(quads, K, (R1, t1), (R0, t0), size),
    )
    for key in ("line_matches0", "line_matches1"):
        a, b = from_depth[key][0], exact[key][0]
        assert (b >= 0).sum() >= 30, "too few true line matches to compare"
        assert (a == b).double().mean() >= 0.95, key  # 0.996 measured
    # of the exact positives, how many the depth map finds (and vice versa)
    pos_d, pos_e = from_depth["line_assignment"], exact["line_assignment"]
    both = (pos_d & pos_e).sum()
    assert both >= 0.95 * pos_e.sum() and both >= 0.95 * pos_d.sum()  # 197 of 198
