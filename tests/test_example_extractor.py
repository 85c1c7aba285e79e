"""examples/my_extractor.py: loaded by dotted path, follows the extractor contract, and
LightGlue trains on it."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.models import get_model

ROOT = Path(__file__).parents[1]


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


def test_loaded_by_dotted_path_and_described():
    cls = get_model("examples.my_extractor")
    assert cls.__name__ == "HarrisHOG"
    assert cls.describe({}) == {
        "descriptor_dim": 128,
        "scales": False,
        "orientations": False,
    }
    assert "examples.my_extractor" in sys.modules


def test_keypoints_follow_the_pixel_centre_convention():
    """A bright square's corner pixel (i, j) is reported at (i + 0.5, j + 0.5)."""
    image = torch.zeros(1, 1, 64, 80)
    image[..., 20:45, 30:60] = (
        1.0  # corners at pixels (30, 20), (59, 20), (30, 44), (59, 44)
    )
    model = get_model("examples.my_extractor")(
        {"max_num_keypoints": 4, "remove_borders": 4}
    )
    k = model({"image": image})["keypoints"][0]
    expected = torch.tensor([[30, 20], [59, 20], [30, 44], [59, 44]]) + 0.5
    d = torch.cdist(k, expected)
    # Harris peaks sit within a pixel of the corner pixel's centre, symmetrically
    assert d.min(0).values.max() <= 1.5
    assert torch.allclose(k.mean(0), expected.mean(0), atol=0.01)


def test_padding_and_mask():
    image = torch.zeros(2, 3, 64, 64)
    image[0, :, 20:44, 20:44] = 1  # four corners, away from the removed borders
    model = get_model("examples.my_extractor")(
        {"max_num_keypoints": 32, "force_num_keypoints": True, "seed": 0}
    )
    out = model({"image": image})
    assert out["keypoints"].shape == (2, 32, 2) and out["descriptors"].shape == (
        2,
        32,
        128,
    )
    assert out["keypoint_mask"][0].sum() == 4 and out["keypoint_mask"][1].sum() == 0
    assert (out["keypoints"] > 0).all() and (out["keypoints"] < 64).all()
    with pytest.raises(ValueError, match="force_num_keypoints"):
        get_model("examples.my_extractor")({"max_num_keypoints": 32})({"image": image})


@pytest.fixture(scope="module")
def pair_batch(tmp_path_factory):
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "astronaut"):
        cv2.imwrite(str(root / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    conf = {
        "data_dir": str(root), "image_dir": "", "image_list": None, "train_size": None,
        "val_size": 0, "batch_size": 2, "photometric": {"name": "identity"},
        "homography": {"difficulty": 0.5, "max_angle": 20, "patch_shape": [320, 240]},
    }  # fmt: skip
    return next(iter(get_dataset("homographies")(conf).get_data_loader("train")))


def test_descriptors_match_and_lightglue_trains(pair_batch):
    conf = {
        "extractor": {"name": "examples.my_extractor", "max_num_keypoints": 256,
                      "force_num_keypoints": True, "seed": 0},
        "matcher": {"name": "matchers.nearest_neighbor", "mutual_check": True},
        "ground_truth": {"name": "matchers.homography_matcher"},
    }  # fmt: skip
    nn = get_model("two_view_pipeline")(conf).eval()
    with torch.no_grad():
        pred = nn(pair_batch)
    gt = nn.ground_truth({**pair_batch, **pred})
    m0, g0 = pred["matches0"], gt["gt_matches0"]
    correct = ((m0 == g0) & (m0 >= 0)).sum() / (m0 >= 0).sum()
    assert correct > 0.5  # the descriptor is informative on real photos
    conf["matcher"] = {"name": "matchers.lightglue", "input_dim": 128, "descriptor_dim": 64,
                       "n_layers": 2, "num_heads": 1}  # fmt: skip
    model = get_model("two_view_pipeline")(conf).train()
    losses, _ = model.loss(model(pair_batch), pair_batch)
    losses["total"].mean().backward()
    grads = [p.grad for p in model.matcher.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
