"""Protocol details of the benchmarks that the end-to-end tests cannot pin down."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gluefactory.eval.hpatches import HPatchesPipeline, homography_robust_metrics
from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
from gluefactory.eval.records import PairRecord
from gluefactory.eval.results import read_json, write_json
from gluefactory.geometry.homography import warp_points
from gluefactory.robust_estimators import BaseEstimator
from gluefactory.utils.image import ImagePreprocessor


@pytest.mark.parametrize("hw", [(400, 600), (600, 400), (480, 640), (1200, 800)])
def test_hpatches_resizes_short_side_to_480(hw):
    prep = ImagePreprocessor(HPatchesPipeline().conf.data.preprocessing)
    h, w = prep.target_size(*hw)
    assert min(h, w) == 480
    assert max(h, w) == round(max(hw) * 480 / min(hw))


def test_megadepth_exports_at_config_resolution_evaluates_at_original():
    md = MegaDepth1500Pipeline({"data": {"preprocessing": {"resize": 1600}}})
    assert md.conf.data.preprocessing.resize == 1600
    ev = md.eval_data_conf()
    assert ev.preprocessing.resize is None
    assert {k: v for k, v in ev.items() if k != "preprocessing"} == {
        k: v for k, v in md.conf.data.items() if k != "preprocessing"
    }  # everything else (root, scenes...) as exported


def test_resized_homography_matches_resized_points():
    """The GT of the toy set (dataset contract): H' = S1 H S0^-1, +0.5 convention."""
    from eval_toy_homography import ToyHomographies

    ds = ToyHomographies(
        {"preprocessing": HPatchesPipeline().conf.data.preprocessing}
    ).get_dataset("test")
    item = ds[0]
    s0, s1 = item["view0"]["scales"], item["view1"]["scales"]
    p = torch.tensor([[0.5, 0.5], [100.0, 37.5], [599.5, 399.5]])  # original pixels
    expected = warp_points(p, item["H_0to1_original"]) * s1
    assert torch.allclose(warp_points(p * s0, item["H_0to1"]), expected, atol=1e-3)
    assert min(item["view0"]["image"].shape[-2:]) == 480


def record(k0, k1, H, size) -> PairRecord:
    """The per-pair record the robust metrics take (as the workers get it)."""
    return PairRecord(
        name="p",
        kpts0=k0.double(),
        kpts1=k1.double(),
        scores=torch.ones(len(k0), dtype=torch.float64),
        num_keypoints=(len(k0), len(k1)),
        image_size0=size,
        image_size1=size,
        H_0to1=H.double(),
    )


class FixedHomography(BaseEstimator):
    """Returns the homography of its config (tests the metric plumbing, not RANSAC)."""

    default_conf = {"H": [1, 0, 0, 0, 1, 0, 0, 0, 1]}

    def _forward(self, data):
        n = len(data["m_kpts0"])
        H = torch.tensor(list(self.conf.H), dtype=torch.float64).reshape(3, 3)
        return {
            "success": True,
            "M_0to1": H,
            "inliers": torch.ones(n, dtype=torch.bool),
        }


def test_corner_error_uses_corners_of_the_resized_image():
    """Corners (0,0), (W,0), (W,H), (0,H) of image 0 (W, H: its 480 px size, not W-1)."""
    w, h, s = 720.0, 480.0, 1.01
    est = FixedHomography({"H": [s, 0, 0, 0, s, 0, 0, 0, 1]})
    inputs = record(
        torch.rand(10, 2) * 100, torch.rand(10, 2) * 100, torch.eye(3), (w, h)
    )
    res = homography_robust_metrics(inputs, est)
    d = (s - 1) * np.array([0.0, w, math.hypot(w, h), h])
    assert res["H_error_ransac"] == pytest.approx(d.mean())
    assert res["ransac_inl"] == 10 and res["ransac_inl%"] == 1.0


def test_failed_estimate_counts_as_infinite_error():
    inputs = record(  # fewer than 4 matches
        torch.rand(3, 2), torch.rand(3, 2), torch.eye(3), (640.0, 480.0)
    )
    from gluefactory.robust_estimators import load_estimator

    res = homography_robust_metrics(
        inputs, load_estimator("homography", {"name": "poselib"})
    )
    assert res["H_error_ransac"] == math.inf and res["ransac_inl"] == 0


def test_summaries_json_non_finite_is_null(tmp_path):
    path = tmp_path / "summaries.json"
    write_json(path, {"a": 1.5, "b": math.inf, "c": math.nan, "d": 3})
    assert path.read_text().count("null") == 2
    back = read_json(path)
    assert back["a"] == 1.5 and math.isnan(back["b"]) and back["d"] == 3


def test_reported_keys_name_their_aggregation():
    hp = dict(HPatchesPipeline.reported)
    assert hp["median_prec@3px"] == "mprec@3px"
    assert hp["median_ransac_inl%"] == "mransac_inl%"
    md = dict(MegaDepth1500Pipeline.reported)
    assert md["mean_epi_prec@1e-4"] == "mepi_prec@1e-4"
    assert md["median_ransac_inl"] == "mransac_inl"  # inliers: medians on MD1500 too
    assert md["rel_pose_error@5deg"] == "rel_pose_error@5°"
