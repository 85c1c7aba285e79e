"""The two-view pipeline end to end: inference with official weights, one training step
through the ground truth and the loss, cached features instead of an extractor, padded
keypoints masked in the matcher (or not), and the extractor/matcher compatibility check
made before any weights are loaded."""

import pytest
import torch

from gluefactory.eval.metrics import matches_precision_homography
from gluefactory.models import get_model
from gluefactory.utils.errors import ConfigError, WeightsError
from gluefactory.weights import get_weights_path

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


# ----------------------------------------------------------------- padded keypoints


@pytest.fixture(scope="module")
def padded_views(motorcycle_pair):
    """Two pairs of 240 x 320 crops of the Motorcycle stereo views; the second pair has
    its right half flat grey, so that with force_num_keypoints it is mostly padding."""

    def crops(image):
        a = image[..., 100:340, 150:470].clone()
        b = a.clone()
        b[..., 160:] = 0.5
        return torch.cat([a, b])

    return {
        "view0": {"image": crops(motorcycle_pair["image0"])},
        "view1": {"image": crops(motorcycle_pair["image1"])},
    }


@pytest.mark.parametrize("mask", [True, False])
def test_padded_keypoints_are_never_matched_when_masked(padded_views, mask):
    """Batched inference with force_num_keypoints: with mask_padded_keypoints (the
    default) the matcher gets keypoint_mask0/1 and matches no padded point; with
    false (upstream's training recipe) the masks are dropped and the random padded
    points are ordinary points (some of them get matched)."""
    for name in ("xfeat", "xfeat-lighterglue"):
        try:
            get_weights_path(name)
        except WeightsError as e:
            pytest.skip(f"weights {name!r} unavailable: {e}")
    extractor = {
        "name": "extractors.xfeat",
        "max_num_keypoints": 1024,
        "force_num_keypoints": True,
        "seed": 0,
    }
    conf = {
        "extractor": extractor,
        "matcher": {"name": "matchers.lightglue", "features": "xfeat"},
        "mask_padded_keypoints": mask,
    }
    model = get_model("two_view_pipeline")(conf).eval()
    with torch.inference_mode():
        pred = model(padded_views)
        real = [
            model.extractor(padded_views[f"view{i}"])["keypoint_mask"] for i in (0, 1)
        ]
    assert (~real[0][1]).sum() > 200 and (~real[1][1]).sum() > 200  # mostly padding
    matched_padding = sum(
        ((pred[f"matches{i}"] > -1) & ~real[i]).sum().item() for i in (0, 1)
    )
    assert (pred["matches0"] > -1).sum(1).min() > 100
    if mask:
        assert torch.equal(pred["keypoint_mask0"], real[0])
        assert matched_padding == 0
    else:
        assert "keypoint_mask0" not in pred and "keypoint_mask1" not in pred
        assert matched_padding > 0


def test_mask_padded_keypoints_must_be_boolean():
    with pytest.raises(ConfigError, match="mask_padded_keypoints"):
        get_model("two_view_pipeline")({"mask_padded_keypoints": "yes"})


# ----------------------------------------------------------------- compatibility


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No weights can be loaded: an empty offline cache, and every load recorded."""
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    calls = []

    def fail(name):
        calls.append(name)
        raise AssertionError(f"weights {name!r} loaded before the check")

    import gluefactory.weights as weights_module
    from gluefactory.models.extractors import base

    monkeypatch.setattr(weights_module, "load_weights", fail)  # LightGlue's
    monkeypatch.setattr(base, "load_weights", fail)  # the extractors'
    yield calls
    assert not calls and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "extractor,features,expected",
    [
        ("extractors.xfeat", "disk", "128-D descriptors, the extractor gives 64-D"),
        ("extractors.aliked", "sift", "keypoint scales"),
        ("extractors.disk", "xfeat", "64-D descriptors, the extractor gives 128-D"),
    ],
)
def test_matcher_that_does_not_fit_is_an_error_before_any_download(
    no_weights, extractor, features, expected
):
    """Issue 9 item 5: model.matcher.features=disk with XFeat features used to fail at
    the first match, after downloading the matcher's weights."""
    conf = {
        "extractor": {"name": extractor},
        "matcher": {"name": "matchers.lightglue", "features": features},
    }
    with pytest.raises(ConfigError, match=expected) as info:
        get_model("two_view_pipeline")(conf)
    msg = str(info.value)
    assert extractor in msg and f"matchers.lightglue (features={features})" in msg


def test_extractor_configs_change_what_is_described(no_weights):
    """The check uses each component's merged config: ALIKED t16 has 64-D descriptors,
    XFeat* (dense) has scales."""
    conf = {
        "extractor": {"name": "extractors.aliked", "model_name": "aliked-t16"},
        "matcher": {"name": "matchers.lightglue", "features": "aliked"},
    }
    with pytest.raises(ConfigError, match="128-D descriptors, the extractor gives 64"):
        get_model("two_view_pipeline")(conf)
    # a matcher with no descriptor requirement (nearest neighbour) fits anything
    conf = {
        "extractor": {"name": "extractors.sift"},
        "matcher": {"name": "matchers.nearest_neighbor"},
    }
    model = get_model("two_view_pipeline")(conf)
    assert model.extractor is not None and model.matcher is not None
