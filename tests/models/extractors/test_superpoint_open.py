"""Open SuperPoint (rpautrat/SuperPoint, MIT): architecture by key names and shapes of
``superpoint_v6_from_tf.pth`` (not reachable here), and a deterministic forward on
seeded random weights: shapes, NMS, borders, top-k, padding, batching, sampling."""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.extractors.superpoint_open import fill_num_batches_tracked
from gluefactory.utils.conf import ConfigError
from gluefactory.weights import WeightsError

SuperPointOpen = get_model("extractors.superpoint_open")


def _expected_keys() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of superpoint_v6_from_tf.pth, written out independently
    of the model: VGG blocks conv -> ReLU -> BatchNorm named (conv, bn)."""
    blocks = {
        "backbone.0.0": (1, 64, 3), "backbone.0.1": (64, 64, 3),
        "backbone.1.0": (64, 64, 3), "backbone.1.1": (64, 64, 3),
        "backbone.2.0": (64, 128, 3), "backbone.2.1": (128, 128, 3),
        "backbone.3.0": (128, 128, 3), "backbone.3.1": (128, 128, 3),
        "detector.0": (128, 256, 3), "detector.1": (256, 65, 1),
        "descriptor.0": (128, 256, 3), "descriptor.1": (256, 256, 1),
    }  # fmt: skip
    keys = {}
    for name, (c_in, c_out, k) in blocks.items():
        keys[f"{name}.conv.weight"] = (c_out, c_in, k, k)
        keys[f"{name}.conv.bias"] = (c_out,)
        for p in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.bn.{p}"] = (c_out,)
        keys[f"{name}.bn.num_batches_tracked"] = ()
    return keys


@pytest.fixture(scope="module")
def crops(homography_pair, real_crop):
    """Two 240 x 320 crops of the real photo pair (small: the VGG runs at full res)."""
    return [real_crop, homography_pair["image1"][..., 80:320, 100:420]]


def _model(**conf) -> torch.nn.Module:
    torch.manual_seed(0)
    model = SuperPointOpen({"weights": None, **conf}).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_state_dict_keys_and_shapes():
    own = SuperPointOpen({"weights": None}).net.state_dict()
    expected = _expected_keys()
    assert {k: tuple(v.shape) for k, v in own.items()} == expected


def test_loads_file_without_batch_counters(tmp_path):
    state = {
        k: torch.randn(s) if s else torch.tensor(0) for k, s in _expected_keys().items()
    }
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "superpoint_v6_from_tf.pth"
    torch.save(state, path)
    model = SuperPointOpen({"weights": str(path)})
    torch.testing.assert_close(
        model.net.state_dict()["detector.1.conv.weight"],
        state["detector.1.conv.weight"],
    )
    state["detector.1.conv.weight"] = torch.randn(64, 256, 1, 1)
    torch.save(state, path)
    with pytest.raises(ConfigError, match="detector.1.conv.weight"):
        SuperPointOpen({"weights": str(path)})
    assert "backbone.0.0.bn.num_batches_tracked" in fill_num_batches_tracked(
        model.net, {}
    )


def test_deterministic_forward(crops):
    image = crops[0]
    with torch.no_grad():
        a = _model(max_num_keypoints=200)({"image": image})
        b = _model(max_num_keypoints=200)({"image": image})
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert a["keypoints"].shape == (1, 200, 2)
    assert a["descriptors"].shape == (1, 200, 256)
    torch.testing.assert_close(a["descriptors"].norm(dim=-1), torch.ones(1, 200))
    scores = a["keypoint_scores"][0]
    assert (scores[1:] <= scores[:-1]).all()  # top-k sorted


def test_nms_borders_threshold(crops):
    image = crops[0]
    h, w = image.shape[-2:]
    model = _model(nms_radius=4, remove_borders=4, detection_threshold=0.005)
    with torch.no_grad():
        pred = model({"image": image, "image_size": torch.tensor([[w - 30, h]])})
    k = pred["keypoints"][0]
    assert len(k) > 50
    assert (pred["keypoint_scores"][0] > 0.005).all()
    pix = torch.floor(k).long()
    # pixel centres (i + 0.5): keypoints lie on the score map's pixel grid
    torch.testing.assert_close(k - pix, torch.full_like(k, 0.5))
    assert (
        (pix >= 4).all()
        and (pix[:, 0] < w - 30 - 4).all()
        and (pix[:, 1] < h - 4).all()
    )
    cheb = (pix[:, None] - pix[None]).abs().max(-1).values
    cheb.fill_diagonal_(100)
    assert cheb.min() > 4  # no two maxima within the NMS radius (no ties here)


def test_topk_regardless_of_score(crops):
    with torch.no_grad():
        pred = _model(detection_threshold=-1, max_num_keypoints=1000, nms_radius=3)(
            {"image": crops[0]}
        )
    assert pred["keypoints"].shape[1] == 1000


def test_descriptor_sampling_convention(crops):
    """Descriptors are the dense map bilinearly interpolated at (x / 8 - 0.5, y / 8 - 0.5)
    (cell c covers pixels [8c, 8c + 8)), then L2-normalised: checked by hand."""
    model = _model(dense_outputs=True, max_num_keypoints=300)
    with torch.no_grad():
        pred = model({"image": crops[0]})
    dense = pred["dense_descriptors"][0]  # (256, h, w)
    k = pred["keypoints"][0].double()
    u, v = k[:, 0] / 8 - 0.5, k[:, 1] / 8 - 0.5
    x0, y0 = u.floor().long(), v.floor().long()
    fx, fy = (u - x0)[:, None], (v - y0)[:, None]
    d = dense.double().permute(1, 2, 0)  # (h, w, 256)
    x1 = (x0 + 1).clamp(max=d.shape[1] - 1)
    y1 = (y0 + 1).clamp(max=d.shape[0] - 1)
    expected = (
        d[y0, x0] * (1 - fx) * (1 - fy)
        + d[y0, x1] * fx * (1 - fy)
        + d[y1, x0] * (1 - fx) * fy
        + d[y1, x1] * fx * fy
    )
    expected = torch.nn.functional.normalize(expected, dim=-1).float()
    torch.testing.assert_close(pred["descriptors"][0], expected, atol=1e-5, rtol=1e-4)


def test_grey_and_rgb_inputs(crops):
    image = crops[0]
    grey = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
    model = _model(max_num_keypoints=200)
    with torch.no_grad():
        a, b = model({"image": image}), model({"image": grey})
    torch.testing.assert_close(a["keypoints"], b["keypoints"])
    with pytest.raises(ValueError, match="image"):
        model({"image": torch.rand(1, 2, 64, 64)})


def test_missing_weights_error(offline_weights):
    with pytest.raises(WeightsError, match="superpoint_v6_from_tf.pth") as info:
        SuperPointOpen()
    assert "rpautrat/SuperPoint" in str(info.value)
