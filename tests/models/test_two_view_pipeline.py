"""The two-view pipeline end to end: inference with official weights, one training step
through the ground truth and the loss, and cached features instead of an extractor."""

import pytest
import torch

from gluefactory.eval.metrics import matches_precision_homography
from gluefactory.models import get_model

EXTRACTOR = {
    "name": "extractors.aliked",
    "max_num_keypoints": 256,
    "detection_threshold": -1,
}


def _views(pair):
    size = torch.tensor([[pair["image0"].shape[-1], pair["image0"].shape[-2]]]).float()
    return {
        "view0": {"image": pair["image0"], "image_size": size},
        "view1": {"image": pair["image1"], "image_size": size},
        "H_0to1": pair["H_0to1"][None],
    }


def test_inference_with_official_weights(homography_pair):
    conf = {
        "extractor": EXTRACTOR,
        "matcher": {"name": "matchers.lightglue", "features": "aliked"},
    }
    model = get_model("two_view_pipeline")(conf).eval()
    with torch.inference_mode():
        pred = model(_views(homography_pair))
    m0 = pred["matches0"][0]
    valid = m0 > -1
    assert pred["keypoints0"].shape == (1, 256, 2) and valid.sum() > 100
    prec = matches_precision_homography(
        pred["keypoints0"][0][valid],
        pred["keypoints1"][0][m0[valid]],
        homography_pair["H_0to1"],
    )
    assert prec["prec@3px"] > 0.9


def test_training_step_through_ground_truth(homography_pair):
    torch.manual_seed(0)
    conf = {
        "extractor": EXTRACTOR,
        "matcher": {"name": "matchers.lightglue", "input_dim": 128, "n_layers": 2},
        "allow_no_extract": True,
        "ground_truth": {
            "name": "matchers.homography_matcher",
            "th_positive": 3,
            "th_negative": 3,
        },
    }
    model = get_model("two_view_pipeline")(conf).train()
    assert not any(p.requires_grad for p in model.extractor.parameters())
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    data = _views(homography_pair)
    with torch.no_grad():  # the frozen extractor runs once; its outputs are the cache
        feats = [model.extractor(data[f"view{i}"]) for i in (0, 1)]
    for i in (0, 1):
        data[f"view{i}"]["cache"] = feats[i]
    losses = []
    for _ in range(8):
        pred = model(data)
        loss, metrics = model.loss(pred, data)
        opt.zero_grad()
        loss["total"].mean().backward()
        grads = [p.grad for p in model.matcher.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        opt.step()
        losses.append(loss["total"].item())
    assert losses[-1] < losses[0]
    gt = model.ground_truth({**data, **pred})
    assert "match_recall" in metrics and (gt["gt_matches0"] > -1).sum() > 50


def test_cached_features_skip_the_extractor():
    conf = {
        "extractor": {"name": None},
        "matcher": {"name": "matchers.nearest_neighbor"},
        "allow_no_extract": True,
    }
    model = get_model("two_view_pipeline")(conf)
    desc = torch.nn.functional.normalize(torch.randn(1, 10, 8), dim=-1)
    kpts = torch.rand(1, 10, 2) * 100
    cache = {"keypoints": kpts, "descriptors": desc}
    pred = model({"view0": {"cache": cache}, "view1": {"cache": cache}})
    assert (pred["matches0"][0] == torch.arange(10)).all()


def test_no_extractor_and_no_cache_is_a_clear_error():
    model = get_model("two_view_pipeline")(
        {"matcher": {"name": "matchers.nearest_neighbor"}}
    )
    with pytest.raises(ValueError, match="no extractor"):
        model(
            {
                "view0": {"image": torch.zeros(1, 3, 8, 8)},
                "view1": {"image": torch.zeros(1, 3, 8, 8)},
            }
        )
