"""What the extractor base class owns for every extractor (docs/extractors.md):
``describe()`` from the config alone, ``weights: null`` = random initialisation, the
input rule (type, shape, value range, NaN, tiny images) and range-checked config keys,
all before any weights are loaded.

Models run with random weights (``weights: null``) on small real crops: no file needed.
"""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.extractors.base import BaseExtractor
from gluefactory.utils.errors import ConfigError, InputError

NAMES = {  # registry name -> has a ``weights`` key
    "extractors.aliked": True,
    "extractors.disk": True,
    "extractors.xfeat": True,
    "extractors.sift": False,
    "extractors.superpoint_open": True,
    "gluefactory_nonfree.superpoint": True,
}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty weights cache and no downloads: loading any file fails."""
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    yield tmp_path
    assert not any(tmp_path.iterdir())


def _random(name: str, **conf) -> BaseExtractor:
    torch.manual_seed(0)
    if NAMES[name]:
        conf = {"weights": None, **conf}
    return get_model(name)(conf).eval()


@pytest.fixture(scope="module")
def crop(homography_pair) -> torch.Tensor:
    """(1, 3, 96, 128) crop of a real photograph, float in [0, 1]."""
    return homography_pair["image0"][..., 150:246, 200:328].contiguous()


# ----------------------------------------------------------------- describe


@pytest.mark.parametrize(
    "name,conf,expected",
    [
        ("extractors.aliked", {}, (128, False, False)),
        ("extractors.aliked", {"model_name": "aliked-t16"}, (64, False, False)),
        ("extractors.disk", {}, (128, False, False)),
        ("extractors.disk", {"desc_dim": 64}, (64, False, False)),
        ("extractors.xfeat", {}, (64, False, False)),
        ("extractors.xfeat", {"dense": True}, (64, True, False)),
        ("extractors.sift", {}, (128, True, True)),
        ("extractors.superpoint_open", {}, (256, False, False)),
        ("gluefactory_nonfree.superpoint", {}, (256, False, False)),
    ],
)
def test_describe_from_the_config_alone(offline, name, conf, expected):
    cls = get_model(name)
    assert issubclass(cls, BaseExtractor)
    dim, scales, oris = expected
    assert cls.describe(conf) == {
        "descriptor_dim": dim,
        "scales": scales,
        "orientations": oris,
    }


def test_describe_matches_the_outputs(crop):
    """What describe() announces is what the model returns."""
    for name in NAMES:
        model = _random(name, max_num_keypoints=64)
        with torch.inference_mode():
            pred = model({"image": crop})
        info = type(model).describe(model.conf)
        assert pred["descriptors"].shape[-1] == info["descriptor_dim"], name
        assert ("scales" in pred) == info["scales"], name
        assert ("oris" in pred) == info["orientations"], name


def test_describe_rejects_bad_configs(offline):
    with pytest.raises(ConfigError, match="model_name"):
        get_model("extractors.aliked").describe({"model_name": "aliked-x"})
    with pytest.raises(ConfigError, match="max_num_keypont"):  # unknown key
        get_model("extractors.xfeat").describe({"max_num_keypont": 5})


# ----------------------------------------------------------------- weights


@pytest.mark.parametrize("name", [n for n, w in NAMES.items() if w])
def test_weights_null_is_random_initialisation(offline, caplog, name):
    """The same meaning everywhere (DISK used to raise): nothing is loaded, logged."""
    with caplog.at_level(logging.INFO, logger="gluefactory"):
        model = _random(name)
    assert model.conf.weights is None
    assert "random initialisation" in caplog.text


@pytest.mark.parametrize("name", [n for n, w in NAMES.items() if w])
def test_default_weights_name_the_official_file(name):
    conf = get_model(name).build_conf({})
    assert isinstance(conf.weights, str) and conf.weights


def test_aliked_default_weights_follow_model_name(offline):
    aliked = get_model("extractors.aliked")
    assert aliked.build_conf({}).weights == "aliked-n16"
    assert aliked.build_conf({"model_name": "aliked-t16"}).weights == "aliked-t16"
    assert aliked.build_conf({"weights": "/a/b.pth"}).weights == "/a/b.pth"


# ----------------------------------------------------------------- input rule


@pytest.mark.parametrize("name", list(NAMES))
def test_uint8_is_converted_with_a_warning(name, crop):
    """uint8 (unambiguous) is divided by 255, with a warning: same outputs as the
    float image (used to give SIFT 0 keypoints and ALIKED other keypoints)."""
    model = _random(name, max_num_keypoints=64, detection_threshold=-1)
    u8 = (crop * 255).round().to(torch.uint8)
    with torch.inference_mode():
        ref = model({"image": u8.float() / 255})
        with pytest.warns(UserWarning, match="uint8; converted to float / 255"):
            pred = model({"image": u8})
    assert pred["keypoints"].shape[1] > 10
    for key, value in ref.items():
        torch.testing.assert_close(pred[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(NAMES))
def test_bad_images_are_input_errors(name, crop):
    model = _random(name, max_num_keypoints=64)
    nan = crop.clone()
    nan[..., 3, 4] = float("nan")
    cases = [
        (crop * 255, r"values in \[0, 2\d\d.*divide it by 255"),
        (crop - 0.5, r"must be float in \[0, 1\]"),
        (nan, "3 NaN or infinite"),
        (torch.full_like(crop, float("nan")), "NaN or infinite"),
        (torch.full_like(crop, float("inf")), "NaN or infinite"),
        (crop[0], r"\(B, 1 or 3, H, W\), got \(3, 96, 128\) \(one image: add"),
        (crop[:, :2], r"\(B, 1 or 3, H, W\), got \(1, 2, 96, 128\)"),
        ((crop * 255).int(), "dtype torch.int32"),
        (crop.numpy(), "must be a torch.Tensor"),
        (crop[..., :0], "empty"),
    ]
    for image, match in cases:
        with pytest.raises(InputError, match=match):
            with torch.inference_mode():
                model({"image": image})


@pytest.mark.parametrize("name", list(NAMES))
def test_small_overshoot_and_grey_are_accepted(name, crop):
    """Bicubic resizing overshoots [0, 1] slightly: accepted as is; grey input too."""
    model = _random(name, max_num_keypoints=64)
    image = crop * 1.1 - 0.05
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("error")
        model({"image": image})
        model({"image": image.mean(1, keepdim=True)})


@pytest.mark.parametrize("name", list(NAMES))
def test_tiny_images_are_input_errors_naming_size_and_minimum(name, crop):
    """1x1 to 8x8 images used to give 0-10 keypoints (XFeat: upsampled to 32 x 32)
    or raw PyTorch errors; below its minimum each model now says so."""
    model = _random(name, detection_threshold=-1)
    minimum = type(model).min_image_size
    assert 16 <= minimum <= 32
    for h, w in ((1, 1), (4, 4), (8, 8), (minimum - 1, 64), (64, minimum - 1)):
        match = f"{w}x{h} px .WxH., smaller than the {minimum} px"
        with pytest.raises(InputError, match=match):
            with torch.inference_mode():
                model({"image": crop[..., :h, :w]})
    with torch.inference_mode():
        pred = model({"image": crop[..., :minimum, :minimum]})
    assert pred["keypoints"].shape[-1] == 2


# ----------------------------------------------------------------- config ranges


@pytest.mark.parametrize(
    "name,conf,key",
    [
        ("extractors.aliked", {"detection_threshold": 1.0}, "detection_threshold"),
        ("extractors.aliked", {"temperature": 0}, "temperature"),
        ("extractors.aliked", {"n_limit_max": 0}, "n_limit_max"),
        ("extractors.aliked", {"nms_radius": 0}, "nms_radius"),
        ("extractors.aliked", {"seed": "a"}, "seed"),
        ("extractors.disk", {"chunk": 0}, "chunk"),
        ("extractors.disk", {"desc_dim": 0}, "desc_dim"),
        ("extractors.xfeat", {"detection_threshold": 2}, "detection_threshold"),
        ("extractors.xfeat", {"dense_share": 1.5}, "dense_share"),
        ("extractors.xfeat", {"dense_scales": [0.6]}, "dense_scales"),
        ("extractors.sift", {"num_octaves": 0}, "num_octaves"),
        ("extractors.sift", {"edge_threshold": -1}, "edge_threshold"),
        ("extractors.sift", {"num_threads": 0}, "num_threads"),
        ("extractors.superpoint_open", {"descriptor_dim": 0}, "descriptor_dim"),
        ("extractors.superpoint_open", {"detection_threshold": 1}, "threshold"),
        ("gluefactory_nonfree.superpoint", {"trainable": 1}, "trainable"),
    ],
)
def test_out_of_range_values_name_the_key(offline, name, conf, key):
    """Checked before any weights are loaded (the cache is empty and offline)."""
    with pytest.raises(ConfigError, match=key):
        get_model(name)(conf)


def test_disk_logit_threshold_is_unbounded(offline):
    """DISK thresholds logits: any value is a real threshold (no upper bound)."""
    model = get_model("extractors.disk")({"weights": None, "detection_threshold": 5.0})
    assert model.threshold == 5.0
