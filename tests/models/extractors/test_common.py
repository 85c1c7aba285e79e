"""The interface every extractor shares (docs/extractors.md, "Common interface"):
common configuration keys and their errors, ``detection_threshold`` -1 / None (top-k
regardless of score), ``force_num_keypoints`` with ``keypoint_mask``, ``seed``,
``remove_borders`` with ``image_size``, and batching images with different keypoint
counts for inference (pad + ``keypoint_mask``).

All run on a 240 x 320 crop of a real photograph. Models with official weights skip
when the weights manager cannot obtain them; both SuperPoints use seeded random weights
(their files cannot be had offline).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.models import get_model
from gluefactory.models.utils.keypoints import stack_features
from gluefactory.utils.conf import ConfigError

COMMON_KEYS = (
    "max_num_keypoints",
    "detection_threshold",
    "nms_radius",
    "remove_borders",
    "force_num_keypoints",
    "trainable",
    "seed",
)


@dataclass
class Spec:
    name: str
    weights: str | None  # registered weights needed, or None
    num: int  # max_num_keypoints that -1 must reach on the crop
    high: float | None  # a threshold that keeps fewer than num (None: median score)
    conf: dict = field(default_factory=dict)
    # padded entries are described where they lie (unit descriptors), else zeros
    described_padding: bool = True


SPECS = {
    "aliked": Spec("extractors.aliked", "aliked-n16", 500, 0.2),
    "disk": Spec("extractors.disk", "disk-depth", 500, 0.0),  # logit > 0: 430
    "xfeat": Spec("extractors.xfeat", "xfeat", 1000, 0.05),
    "sift": Spec("extractors.sift", None, 300, 0.02 / 3, described_padding=False),
    "superpoint_open": Spec(
        "extractors.superpoint_open", None, 500, None, {"weights": None}
    ),
    "superpoint_magicleap": Spec(
        "gluefactory_nonfree.superpoint", None, 500, None, {"weights": None}
    ),
}


@pytest.fixture(params=list(SPECS))
def spec(request, weights_path) -> Spec:
    spec = SPECS[request.param]
    if spec.weights is not None:
        weights_path(spec.weights)  # skip when unavailable
    return spec


def _build(spec: Spec, **conf):
    torch.manual_seed(0)  # the random weights of the SuperPoints
    return get_model(spec.name)({**spec.conf, **conf}).eval()


def _run(spec: Spec, data: dict, **conf) -> dict:
    with torch.inference_mode():
        return _build(spec, **conf)(data)


@pytest.mark.parametrize("name", list(SPECS))
def test_common_configuration_keys(name):
    cls = get_model(SPECS[name].name)
    conf = OmegaConf.merge(cls.base_default_conf, cls.default_conf)
    missing = [k for k in COMMON_KEYS if k not in conf]
    assert not missing, f"{name} lacks {missing}"
    assert conf.trainable is False and conf.force_num_keypoints is False


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize(
    "conf,key",
    [
        ({"force_num_keypoints": True, "max_num_keypoints": -1}, "max_num_keypoints"),
        ({"force_num_keypoints": True, "max_num_keypoints": None}, "max_num_keypoints"),
        ({"max_num_keypoints": 1.5}, "max_num_keypoints"),
        ({"detection_threshold": "high"}, "detection_threshold"),
        ({"remove_borders": -1}, "remove_borders"),
        ({"nms_radius": -1}, "nms_radius"),
    ],
)
def test_bad_common_values_are_config_errors(name, conf, key):
    """Checked before any weights are loaded: no file needed."""
    with pytest.raises(ConfigError, match=key):
        get_model(SPECS[name].name)({**SPECS[name].conf, **conf})


def test_threshold_minus_one_is_top_k(spec, real_crop):
    """-1 (the shipped configs' value) and None: exactly max_num_keypoints, the best
    regardless of score; a real threshold keeps fewer on the same image."""
    n = spec.num
    data = {"image": real_crop}
    pred = _run(spec, data, detection_threshold=-1, max_num_keypoints=n)
    assert pred["keypoints"].shape[:2] == (1, n)
    assert pred["descriptors"].shape[:2] == (1, n)
    again = _run(spec, data, detection_threshold=None, max_num_keypoints=n)
    torch.testing.assert_close(again, pred, rtol=0, atol=0)
    high = spec.high
    if high is None:  # random weights: scores in a narrow band around 1/65
        high = pred["keypoint_scores"][0].median().item()
    fewer = _run(spec, data, detection_threshold=high, max_num_keypoints=n)
    assert 0 < fewer["keypoints"].shape[1] < n


def test_force_num_keypoints_contract(spec, real_crop):
    """Exactly N; the real keypoints first, unchanged; then random in-image points with
    score 0 and keypoint_mask False, described where they lie (SIFT: zeros); with
    fewer than found, the best N as without forcing (batches and seeds: see
    test_batched_equals_single)."""
    n = 1200  # more than any model finds on the crop with its default threshold
    h, w = real_crop.shape[-2:]
    data = {"image": real_crop}
    plain = _run(spec, data, max_num_keypoints=n)
    pred = _run(spec, data, max_num_keypoints=n, force_num_keypoints=True)
    assert pred["keypoints"].shape == (1, n, 2)
    assert pred["keypoint_scores"].shape == (1, n)
    assert pred["descriptors"].shape[:2] == (1, n)
    valid = pred["keypoint_mask"]
    assert valid.dtype == torch.bool and valid.shape == (1, n)
    num = plain["keypoints"].shape[1]
    assert 0 < num < n and valid.sum() == num and valid[0, :num].all()
    for key in ("keypoints", "keypoint_scores", "descriptors"):
        torch.testing.assert_close(pred[key][:, :num], plain[key], atol=1e-5, rtol=0)
    assert (pred["keypoint_scores"][~valid] == 0).all()
    k = pred["keypoints"]
    assert (k >= 0).all() and (k[..., 0] <= w).all() and (k[..., 1] <= h).all()
    assert k[~valid].unique(dim=0).shape[0] == (~valid).sum()  # random, distinct
    norms = pred["descriptors"][~valid].norm(dim=-1)
    expected = 1.0 if spec.described_padding else 0.0
    torch.testing.assert_close(norms, torch.full_like(norms, expected))
    few = _run(spec, data, max_num_keypoints=50, force_num_keypoints=True)
    plain = _run(spec, data, max_num_keypoints=50)
    assert few["keypoint_mask"].all() and few["keypoints"].shape == (1, 50, 2)
    for key in plain:
        torch.testing.assert_close(few[key], plain[key], rtol=0, atol=0)


@pytest.fixture(scope="module")
def two_crops(real_crop) -> torch.Tensor:
    """(2, 3, 240, 320): a crop of a real photograph, and the same with its right half
    flat grey (different keypoint counts for every model, random weights included)."""
    half = real_crop.clone()
    half[..., 160:] = 0.5
    return torch.cat([real_crop, half])


def test_batched_equals_single(spec, two_crops):
    """Images of a batch are processed independently: with force_num_keypoints and a
    seed, a batch gives every output of each image extracted alone, padding included."""
    conf = {"max_num_keypoints": 1200, "force_num_keypoints": True, "seed": 0}
    batched = _run(spec, {"image": two_crops}, **conf)
    assert (~batched["keypoint_mask"]).any()  # padding is compared too
    for i in range(2):
        single = _run(spec, {"image": two_crops[i : i + 1]}, **conf)
        assert single.keys() == batched.keys()
        for key, value in single.items():
            torch.testing.assert_close(batched[key][i], value[0], atol=1e-4, rtol=0)


def test_different_counts_need_force(spec, real_crop):
    """Two images with different keypoint counts (here: valid regions of different
    sizes, as in a padded batch) cannot be stacked without force_num_keypoints."""
    images = torch.cat([real_crop, real_crop])
    sizes = torch.tensor([[320, 240], [200, 240]])
    with pytest.raises(ValueError, match="force_num_keypoints"):
        _run(spec, {"image": images, "image_size": sizes})
    conf = {"max_num_keypoints": 1200, "force_num_keypoints": True}
    pred = _run(spec, {"image": images, "image_size": sizes}, **conf)
    counts = pred["keypoint_mask"].sum(1)
    assert counts[0] > counts[1] > 0
    assert (pred["keypoints"][1, :, 0] < 200).all()  # padding inside the valid region


def test_remove_borders_and_image_size(spec, real_crop):
    """Keypoints whose pixel is within remove_borders of the valid region's border are
    dropped before the top-k, so the count is still reached (ALIKED's sub-pixel
    refinement may then move a keypoint by up to nms_radius)."""
    border, n = 16, 200
    h, w = real_crop.shape[-2:]
    size = torch.tensor([[w - 40, h - 24]])
    pred = _run(
        spec,
        {"image": real_crop, "image_size": size},
        detection_threshold=-1,
        max_num_keypoints=n,
        remove_borders=border,
    )
    k = pred["keypoints"][0]
    assert len(k) == n
    slack = 2 if spec.name.endswith("aliked") else 0
    pix = k.floor()
    assert (pix >= border - slack).all()
    assert (pix < size[0] - border + slack).all()


def test_batching_different_counts_for_inference(weights_path, homography_pair):
    """The documented recipe: extract per image, pad with stack_features(pad=True),
    pass keypoint_mask to the matcher: each pair gets the matches it gets alone."""
    weights_path("xfeat")
    xfeat = get_model("extractors.xfeat")({"max_num_keypoints": 1024}).eval()
    matcher = get_model("matchers.nearest_neighbor")({"mutual_check": True})
    crops = [
        homography_pair[f"image{i}"][..., y : y + 160, x : x + 224]
        for i in (0, 1)
        for y, x in ((60, 100), (200, 300))
    ]
    with torch.inference_mode():
        feats = [{k: v[0] for k, v in xfeat({"image": c}).items()} for c in crops]
        counts = [len(f["keypoints"]) for f in feats]
        assert len(set(counts)) > 1
        b0, b1 = (
            stack_features(feats[:2], pad=True),
            stack_features(feats[2:], pad=True),
        )
        batched = matcher(
            {
                "descriptors0": b0["descriptors"],
                "descriptors1": b1["descriptors"],
                "keypoint_mask0": b0["keypoint_mask"],
                "keypoint_mask1": b1["keypoint_mask"],
            }
        )
        for i in range(2):
            alone = matcher(
                {
                    "descriptors0": feats[i]["descriptors"][None],
                    "descriptors1": feats[2 + i]["descriptors"][None],
                }
            )
            m0 = alone["matches0"][0]
            assert (m0 > -1).sum() > 10
            torch.testing.assert_close(batched["matches0"][i, : counts[i]], m0)
            assert (batched["matches0"][i, counts[i] :] == -1).all()
