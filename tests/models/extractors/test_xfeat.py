"""XFeat extractor: parity with the reference, conventions, batching, padding, errors.

The reference is kornia 0.9.0's ``kornia.feature.XFeat`` (installed in CI), loading our
``xfeat.pt`` offline (no download). Tests that need the weights skip when the weights
manager cannot obtain them.
"""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.extractors.xfeat import XFeatNet, strict_maxima
from gluefactory.models.utils.keypoints import strict_local_maxima
from gluefactory.utils.conf import ConfigError
from gluefactory.weights import WeightsError

XFeat = get_model("extractors.xfeat")


@pytest.fixture(scope="module")
def xfeat_weights(weights_path):
    return weights_path("xfeat")


@pytest.fixture(scope="module")
def model(xfeat_weights):
    return XFeat({"weights": str(xfeat_weights)}).eval()


@pytest.fixture(scope="module")
def reference(xfeat_weights):
    kornia = pytest.importorskip("kornia")
    ref = kornia.feature.XFeat()
    ref.net.load_state_dict(torch.load(xfeat_weights, map_location="cpu"))
    return ref.eval()


def test_weights_keys_and_shapes(xfeat_weights):
    state = torch.load(xfeat_weights, map_location="cpu")
    own = XFeatNet().state_dict()
    assert sorted(own) == sorted(state)
    assert all(own[k].shape == state[k].shape for k in own)


def test_parity_with_kornia(model, reference, real_images, nearest):
    """Same keypoints (>= 99 % within 0.5 px after +0.5, same count), descriptors with
    cosine > 0.999, same scores, as kornia 0.9.0's XFeat (the reference, in CI) with the
    same weights and settings, on the four real photographs of the fixtures."""
    for name, image in real_images.items():
        with torch.inference_mode():
            ours = model({"image": image})
            ref = reference.detectAndCompute(
                image, top_k=4096, detection_threshold=0.05
            )[0]
        kpts, ref_kpts = ours["keypoints"][0], ref["keypoints"] + 0.5
        assert len(kpts) == len(ref_kpts) > 1000, name
        dist, idx = nearest(kpts, ref_kpts)
        assert (dist < 0.5).float().mean() >= 0.99, name
        # H, W not multiples of 32: we return the resized pixel's centre, which differs
        # from the reference's point by 0.5 (W / W' - 1) px (see the module docstring)
        assert dist.max() < 0.05, name
        cos = (ours["descriptors"][0] * ref["descriptors"][idx]).sum(-1)
        assert cos.min() > 0.999, name
        torch.testing.assert_close(
            ours["keypoint_scores"][0], ref["scores"][idx], atol=1e-4, rtol=1e-3
        )
        assert torch.all(
            ours["keypoint_scores"][0][1:] <= ours["keypoint_scores"][0][:-1]
        )


def test_exact_coordinates_when_divisible_by_32(
    model, reference, motorcycle_pair, nearest
):
    """With H and W multiples of 32 there is no resize: ours == kornia 0.9.0's + 0.5."""
    image = motorcycle_pair["image0"][..., :480, :640]
    with torch.inference_mode():
        ours = model({"image": image})["keypoints"][0]
        ref = reference.detectAndCompute(image, top_k=4096)[0]["keypoints"] + 0.5
    dist, _ = nearest(ours, ref)
    assert len(ours) == len(ref)
    assert dist.max() == 0


def test_dense_parity_with_kornia(xfeat_weights, reference, homography_pair, nearest):
    """XFeat* (semi-dense, two scales): the same cells (as a set), scales and raw
    descriptors as kornia 0.9.0's ``detectAndComputeDense`` (the reference, in CI)."""
    model = XFeat(
        {"weights": str(xfeat_weights), "dense": True, "max_num_keypoints": 3000}
    )
    image = homography_pair["image0"]
    with torch.inference_mode():
        ours = model.eval()({"image": image})
        ref = reference.detectAndComputeDense(image, top_k=3000)
    kpts, ref_kpts = ours["keypoints"][0], ref["keypoints"][0] + 0.5
    assert kpts.shape == ref_kpts.shape == (3000, 2)
    dist, idx = nearest(kpts, ref_kpts)
    assert (dist < 1e-3).float().mean() >= 0.99
    good = dist < 1e-3
    cos = torch.nn.functional.cosine_similarity(
        ours["descriptors"][0][good], ref["descriptors"][0][idx[good]], dim=-1
    )
    assert cos.min() > 0.999
    torch.testing.assert_close(ours["scales"][0][good], ref["scales"][0][idx[good]])


def test_image_size_drops_padding(model, homography_pair):
    image = homography_pair["image0"]
    h, w = image.shape[-2:]
    padded = torch.nn.functional.pad(image, (0, 64, 0, 32))
    with torch.inference_mode():
        pred = model({"image": padded, "image_size": torch.tensor([[w, h]])})
    k = pred["keypoints"][0]
    assert len(k) > 1000 and (k[:, 0] < w).all() and (k[:, 1] < h).all()


def test_strict_maxima_matches_shared_and_kornia():
    """The slice-based NMS equals the shared max-pool one and kornia 0.9.0's nms2d
    (the reference NMS), ties and borders included."""
    torch.manual_seed(0)
    kornia = pytest.importorskip("kornia")
    for scores in (torch.rand(2, 37, 53), torch.randint(0, 4, (2, 37, 53)).float()):
        for r in (1, 2, 3):
            ours = strict_maxima(scores, r)
            assert torch.equal(ours, strict_local_maxima(scores, 2 * r + 1))
            ref = kornia.geometry.subpix.nms2d(
                scores[:, None], (2 * r + 1, 2 * r + 1), mask_only=True
            )[:, 0]
            assert torch.equal(ours, ref)
    assert strict_maxima(torch.rand(1, 4, 4), 2).sum() == 0  # window larger than map


def test_missing_weights_error(offline_weights):
    with pytest.raises(WeightsError, match="xfeat.pt"):
        XFeat()


def test_bad_config():
    with pytest.raises(ConfigError, match="max_num_keypoints"):
        XFeat({"weights": None, "force_num_keypoints": True, "max_num_keypoints": -1})
    with pytest.raises(ConfigError, match="remove_borders"):
        XFeat({"weights": None, "dense": True, "remove_borders": 4})


def test_max_num_keypoints_none_means_all(xfeat_weights, homography_pair):
    everything = XFeat({"weights": str(xfeat_weights), "max_num_keypoints": None})
    capped = XFeat({"weights": str(xfeat_weights), "max_num_keypoints": 100})
    with torch.inference_mode():
        n_all = everything.eval()({"image": homography_pair["image0"]})["keypoints"]
        n_cap = capped.eval()({"image": homography_pair["image0"]})["keypoints"]
    assert n_all.shape[1] > 1000 and n_cap.shape[1] == 100


def test_dense_force_num_keypoints(xfeat_weights, homography_pair):
    """XFeat*: a small image has fewer cells than asked for; the rest is padding with
    score 0, zero descriptor and scale 1, flagged by keypoint_mask."""
    image = homography_pair["image0"][..., 100:164, 200:296]  # 64 x 96
    conf = {"weights": str(xfeat_weights), "dense": True, "max_num_keypoints": 400}
    with torch.inference_mode():
        plain = XFeat(conf).eval()({"image": image})
        pred = XFeat({**conf, "force_num_keypoints": True}).eval()({"image": image})
    num = plain["keypoints"].shape[1]
    assert 0 < num < 400 and pred["keypoints"].shape == (1, 400, 2)
    valid = pred["keypoint_mask"][0]
    assert valid.sum() == num and valid[:num].all()
    for key, value in plain.items():
        torch.testing.assert_close(pred[key][:, :num], value, rtol=0, atol=0)
    assert (pred["keypoint_scores"][0][~valid] == 0).all()
    assert (pred["descriptors"][0][~valid] == 0).all()
    assert (pred["scales"][0][~valid] == 1).all()
