"""Lines through the two-view and triplet pipelines: no line-specific pipeline code,
the per-view outputs suffixed like keypoints, ground truth and matching on them."""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.utils.conf import load_conf

from .conftest import photo


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xfeat+lsd+NN"])
def test_two_view_config_matches_lines_on_a_homography_pair(name, homography_pair):
    conf = load_conf(name).model
    conf.ground_truth = {"name": "matchers.homography_matcher", "use_lines": True}
    conf.run_gt_in_forward = True
    model = get_model(conf.name)(conf).eval()
    data = {
        "view0": {"image": homography_pair["image0"]},
        "view1": {"image": homography_pair["image1"]},
        "H_0to1": homography_pair["H_0to1"][None],
    }
    with torch.inference_mode():
        pred = model(data)
    assert (
        200 <= pred["lines0"].shape[1] <= 250 and pred["lines_junc_idx1"].shape[-1] == 2
    )
    m, gt = pred["line_matches0"][0], pred["gt_line_matches0"][0]
    assert (gt >= 0).sum() >= 100
    precision = (m[m >= 0] == gt[m >= 0]).double().mean()
    recall = ((m == gt) & (gt >= 0)).sum() / (gt >= 0).sum()
    assert precision >= 0.8 and recall >= 0.6  # measured 0.92 and 0.82


@pytest.mark.parametrize("batch_triplets", [True, False])
def test_triplet_pipeline_carries_lines(batch_triplets):
    image = photo("astronaut", (240, 320))
    conf = {
        "name": "triplet_pipeline",
        "batch_triplets": batch_triplets,
        "extractor": {
            "name": "lines.wireframe",
            "point_extractor": {
                "name": "extractors.xfeat",
                "max_num_keypoints": 200,
                "force_num_keypoints": True,
                "seed": 0,
            },
            "line_extractor": {"max_num_lines": 60, "force_num_lines": True},
        },
        "matcher": {"name": "matchers.line_nearest_neighbor"},
        "ground_truth": {
            "name": "matchers.homography_matcher",
            "use_lines": True,
            "use_points": False,
        },
        "run_gt_in_forward": True,
    }
    model = get_model("triplet_pipeline")(conf).eval()
    eye = torch.eye(3)[None]
    data = {f"view{i}": {"image": image} for i in range(3)}
    data.update({f"H_{a}to{b}": eye for a, b in ((0, 1), (0, 2), (1, 2))})
    with torch.inference_mode():
        pred = model(data)
    assert pred["lines2"].shape == (1, 60, 2, 2) and "line_mask2" in pred
    real = pred["line_mask0"][0]
    identity = torch.arange(60)
    for out in (pred, pred["0to2"], pred["1to2"]):
        assert torch.equal(out["gt_line_matches0"][0][real], identity[real])
        assert torch.equal(out["line_matches0"][0][real], identity[real])
