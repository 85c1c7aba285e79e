"""DISK extractor: parity with the reference, batching, padding, errors.

The reference is kornia 0.9.0's ``kornia.feature.DISK`` (installed in CI), loading the
same official ``depth`` checkpoint offline (``load_state_dict(file['extractor'])``, as
its ``from_pretrained`` does, without the download). Tests that need the weights skip
when the weights manager cannot obtain them.
"""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.utils.conf import ConfigError
from gluefactory.weights import WeightsError, load_weights

DISK = get_model("extractors.disk")


@pytest.fixture(scope="module")
def weights(weights_path):
    return weights_path("disk-depth")


@pytest.fixture(scope="module")
def reference(weights):
    kornia = pytest.importorskip("kornia")
    ref = kornia.feature.DISK()
    ref.load_state_dict(load_weights("disk-depth")["extractor"])
    return ref.eval()


def _crop(image: torch.Tensor, h: int = 256, w: int = 320) -> torch.Tensor:
    return image[..., :h, :w].contiguous()


@pytest.mark.parametrize(
    "max_num,views",
    [
        (2048, ("homography1", "motorcycle0")),
        pytest.param(2048, ("homography0", "motorcycle1"), marks=pytest.mark.slow),
        pytest.param(None, ("homography0", "motorcycle1"), marks=pytest.mark.slow),
    ],
)
def test_parity_with_kornia(reference, real_images, max_num, views):
    """Same keypoints (+0.5 for the convention), same scores, descriptors with cosine
    similarity > 0.999, on images of two real pairs (sizes not multiples of 16); the
    default run checks one view of each pair, the slow runs the others."""
    model = DISK({"max_num_keypoints": max_num}).eval()
    with torch.inference_mode():
        for label in views:
            image = real_images[label]
            ours = model({"image": image})
            ref = reference(image, n=max_num, pad_if_not_divisible=True)[0]
            kpts = ours["keypoints"][0]
            assert len(kpts) == len(ref.keypoints) and len(kpts) > 500, label
            # integer pixels: the keypoints are identical, in the same (raster) order
            torch.testing.assert_close(kpts, ref.keypoints + 0.5, atol=0, rtol=0)
            torch.testing.assert_close(
                ours["keypoint_scores"][0], ref.detection_scores, atol=1e-5, rtol=1e-5
            )
            cos = (ours["descriptors"][0] * ref.descriptors).sum(-1)
            assert cos.min() > 0.999, label


def test_outputs_and_convention(weights, homography_pair):
    image = _crop(homography_pair["image0"], 250, 310)  # not multiples of 16: padded
    model = DISK({"max_num_keypoints": 500}).eval()
    with torch.inference_mode():
        pred = model({"image": image})
    kpts = pred["keypoints"][0]
    assert kpts.shape == (500, 2) and pred["descriptors"].shape == (1, 500, 128)
    assert (pred["keypoint_scores"] > 0).all()  # logits above detection_threshold 0
    assert torch.equal(kpts - 0.5, (kpts - 0.5).round())  # pixel centres
    # the 5x5 strict-maximum window must fit in the image: 2 px margin
    assert (kpts >= 2.5).all() and (kpts[:, 0] <= 310 - 2.5).all()
    assert (kpts[:, 1] <= 250 - 2.5).all()
    torch.testing.assert_close(pred["descriptors"].norm(dim=-1), torch.ones(1, 500))
    # raster order, as the reference
    flat = (kpts[:, 1] - 0.5) * 310 + kpts[:, 0] - 0.5
    assert (flat[1:] > flat[:-1]).all()


def test_not_divisible_without_padding_is_an_error(weights):
    model = DISK({"pad_if_not_divisible": False}).eval()
    with pytest.raises(ValueError, match="divisible by 16"):
        model({"image": torch.rand(1, 3, 40, 48)})


def test_missing_weights_error(offline_weights):
    with pytest.raises(WeightsError, match="disk-depth-save.pth"):
        DISK()


def test_bad_config():
    with pytest.raises(ConfigError, match="nms_radius"):
        DISK({"nms_radius": -1})
    with pytest.raises(ConfigError, match="nms_window_size"):  # the upstream name
        DISK({"nms_window_size": 5})
    with pytest.raises(ConfigError, match="max_num_keypoints"):
        DISK({"force_num_keypoints": True})


def test_negative_threshold_means_none(weights, real_crop):
    """On logits, 0 keeps positive logits (the reference's default), while -1 and None
    mean no threshold at all (not 'logit > -1'): every strict maximum is kept."""
    with torch.inference_mode():
        preds = {
            th: DISK({"detection_threshold": th}).eval()({"image": real_crop})
            for th in (None, -1, 0.0)
        }
    torch.testing.assert_close(preds[-1], preds[None], rtol=0, atol=0)
    scores = preds[None]["keypoint_scores"][0]
    assert (scores < -1).sum() > 100  # logits below -1 are kept
    positive = preds[0.0]["keypoint_scores"][0]
    assert (positive > 0).all() and len(positive) == (scores > 0).sum()


def test_descriptors_at_keypoints_equal_dense_output(weights):
    """The last convolution's descriptor channels are evaluated at the keypoints only;
    they equal the dense U-Net output there (and the heatmap equals its channel)."""
    from gluefactory.models.extractors.disk import conv_at_pixels

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 20, 24, generator=g)
    weight, bias = torch.randn(5, 6, 5, 5, generator=g), torch.randn(5, generator=g)
    px = torch.tensor([0, 23, 5, 11, 0])
    py = torch.tensor([0, 19, 7, 0, 19])
    dense = torch.nn.functional.conv2d(x[None], weight, bias, padding=2)[0]
    torch.testing.assert_close(
        conv_at_pixels(x, weight, bias, px, py), dense[:, py, px].T
    )

    model = DISK({"max_num_keypoints": 200}).eval()
    image = torch.rand(1, 3, 64, 80, generator=g)
    with torch.inference_mode():
        pred = model({"image": image})
        heatmap, desc = model.dense(image)
    pix = (pred["keypoints"][0] - 0.5).long()
    torch.testing.assert_close(
        pred["keypoint_scores"][0],
        heatmap[0, pix[:, 1], pix[:, 0]],
        atol=1e-5,
        rtol=1e-5,
    )
    ref = torch.nn.functional.normalize(desc[0, :, pix[:, 1], pix[:, 0]].T, dim=-1)
    torch.testing.assert_close(pred["descriptors"][0], ref, atol=1e-5, rtol=1e-5)


def test_trainable_gives_gradients(weights):
    model = DISK({"trainable": True, "max_num_keypoints": 64}).train()
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    pred = model({"image": image})
    (pred["descriptors"].sum() + pred["keypoint_scores"].sum()).backward()
    for p in (model.unet.path_down[0][1][3].weight, model.unet.last_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
