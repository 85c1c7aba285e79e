"""Magic Leap SuperPoint (gluefactory_nonfree): registered by module path, downloads
nothing at import, architecture by the key names and shapes of ``superpoint_v1.pth``
(not reachable here), random-weights forward, Magic Leap's legacy descriptor sampling,
and the error when the weights cannot be had."""

from __future__ import annotations

import importlib

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.utils.keypoints import sample_descriptors
from gluefactory.weights import WeightsError

EXPECTED = {  # superpoint_v1.pth: name -> (c_out, c_in, k)
    "conv1a": (64, 1, 3), "conv1b": (64, 64, 3), "conv2a": (64, 64, 3),
    "conv2b": (64, 64, 3), "conv3a": (128, 64, 3), "conv3b": (128, 128, 3),
    "conv4a": (128, 128, 3), "conv4b": (128, 128, 3), "convPa": (256, 128, 3),
    "convPb": (65, 256, 1), "convDa": (256, 128, 3), "convDb": (256, 256, 1),
}  # fmt: skip


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty weights cache and no downloads."""
    monkeypatch.setenv("GLUEFACTORY_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    return tmp_path


def _model(**conf):
    torch.manual_seed(0)
    return get_model("gluefactory_nonfree.superpoint")({"weights": None, **conf}).eval()


def test_registered_and_import_is_free(offline):
    module = importlib.reload(importlib.import_module("gluefactory_nonfree.superpoint"))
    assert get_model("gluefactory_nonfree.superpoint").__name__ == "SuperPoint"
    assert module.SuperPoint.default_conf["weights"] == "superpoint-magicleap"
    assert not any(offline.iterdir())  # nothing fetched by import or lookup


def test_missing_weights_error(offline):
    with pytest.raises(WeightsError, match="superpoint_v1.pth") as info:
        get_model("gluefactory_nonfree.superpoint")()
    assert "SuperGluePretrainedNetwork" in str(info.value)


def test_state_dict_keys_and_shapes():
    state = _model().net.state_dict()
    expected = {}
    for name, (c_out, c_in, k) in EXPECTED.items():
        expected[f"{name}.weight"] = (c_out, c_in, k, k)
        expected[f"{name}.bias"] = (c_out,)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_loads_official_layout(tmp_path):
    state = {k: torch.randn(v.shape) for k, v in _model().net.state_dict().items()}
    path = tmp_path / "superpoint_v1.pth"
    torch.save(state, path)
    model = get_model("gluefactory_nonfree.superpoint")({"weights": str(path)})
    torch.testing.assert_close(model.net.convDb.weight, state["convDb.weight"])


@pytest.fixture(scope="module")
def crop(homography_pair):
    return homography_pair["image0"][..., 80:320, 100:420]


def test_forward_defaults(crop):
    with torch.no_grad():
        pred = _model()({"image": crop})
        again = _model()({"image": crop})
    n = pred["keypoints"].shape[1]
    assert n > 10
    assert pred["descriptors"].shape == (1, n, 256)
    assert (pred["keypoint_scores"] > 0.005).all()
    k = pred["keypoints"][0]
    h, w = crop.shape[-2:]
    assert (k >= 4.5).all() and (k[:, 0] < w - 4).all() and (k[:, 1] < h - 4).all()
    for key in pred:
        torch.testing.assert_close(pred[key], again[key], rtol=0, atol=0)


def test_legacy_sampling(crop):
    """Magic Leap's sampling maps integer pixel 3.5 (library 4.0) to the first cell and
    pixel 8 w - 1 (library 8 w - 0.5) to the last one, linearly in between; the library
    sampling maps pixel centres 8 c + 4 to cell c (they agree only at the first cell)."""
    model = _model(dense_outputs=True, max_num_keypoints=50)
    with torch.no_grad():
        pred = model({"image": crop})
    legacy_mod = importlib.import_module("gluefactory_nonfree.superpoint")
    dense = pred["dense_descriptors"]  # (1, 256, h, w)
    h, w = dense.shape[-2:]
    kpts = torch.tensor([[[4.0, 4.0], [8 * w - 0.5, 8 * h - 0.5], [8 * 3 + 4.0, 4.0]]])
    legacy = legacy_mod.sample_descriptors_legacy(dense, kpts, 8)[0]
    torch.testing.assert_close(legacy[0], dense[0, :, 0, 0])
    torch.testing.assert_close(legacy[1], dense[0, :, h - 1, w - 1])
    exact = sample_descriptors(dense, kpts, stride=8)[0]
    torch.testing.assert_close(exact[2], dense[0, :, 0, 3])
    assert not torch.allclose(legacy[2], exact[2])
    # the model uses it by default, and the exact one with legacy_sampling=False
    desc = legacy_mod.sample_descriptors_legacy(dense, pred["keypoints"], 8)
    torch.testing.assert_close(pred["descriptors"], desc)
    new = _model(max_num_keypoints=50, legacy_sampling=False)
    with torch.no_grad():
        p2 = new({"image": crop})
    torch.testing.assert_close(
        p2["descriptors"], sample_descriptors(dense, p2["keypoints"], stride=8)
    )


def test_force_and_batch(homography_pair):
    images = torch.cat(
        [homography_pair[f"image{i}"][..., 80:320, 100:420] for i in (0, 1)]
    )
    model = _model(max_num_keypoints=400, force_num_keypoints=True, seed=0)
    with torch.no_grad():
        batched = model({"image": images})
        singles = [model({"image": images[i : i + 1]}) for i in range(2)]
    assert batched["keypoints"].shape == (2, 400, 2)
    for i, single in enumerate(singles):
        for key, value in single.items():
            torch.testing.assert_close(batched[key][i], value[0], atol=1e-5, rtol=1e-5)
    valid = batched["keypoint_mask"]
    assert (batched["keypoint_scores"][~valid] == 0).all()
