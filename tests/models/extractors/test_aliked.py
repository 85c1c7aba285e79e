"""ALIKED extractor: parity with the reference, batching, padding, errors; the
deformable convolution it uses.

The reference is kornia 0.9.0's ``kornia.feature.ALIKED`` (installed in CI), loading
the same official checkpoint offline (``load_state_dict``, as its ``from_pretrained``
does, without the download). Tests that need the weights skip when the weights manager
cannot obtain them.
"""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.utils.deform_conv import deform_conv2d
from gluefactory.utils.conf import ConfigError
from gluefactory.weights import WeightsError

ALIKED = get_model("extractors.aliked")


@pytest.fixture(scope="module")
def n16_weights(weights_path):
    return weights_path("aliked-n16")


@pytest.fixture(scope="module")
def model(n16_weights):
    return ALIKED({"model_name": "aliked-n16"}).eval()


def _reference(name: str, weights, max_num: int, threshold: float):
    kornia = pytest.importorskip("kornia")
    ref = kornia.feature.ALIKED(name, max_num, threshold, 2)
    ref.load_state_dict(torch.load(weights, map_location="cpu"), strict=False)
    return ref.eval()


def _check_parity(ours: dict, ref, label: str, nearest):
    """Same count, >= 99% of keypoints within 0.5 px of the reference's (+0.5 for the
    convention), descriptors of matched keypoints with cosine similarity > 0.999."""
    kpts, desc = ours["keypoints"][0], ours["descriptors"][0]
    ref_kpts = ref.keypoints + 0.5  # kornia: pixel centres at integers
    assert len(kpts) == len(ref_kpts), label
    assert len(kpts) > 100, label
    dist, idx = nearest(kpts, ref_kpts)
    assert (dist < 0.5).float().mean() >= 0.99, label
    close = dist < 0.5
    cos = (desc[close] * ref.descriptors[idx[close]]).sum(-1)
    assert cos.min() > 0.999, (label, cos.min())
    torch.testing.assert_close(
        ours["keypoint_scores"][0][close],
        ref.keypoint_scores[idx[close]],
        atol=1e-4,
        rtol=0,
    )
    assert desc.shape[-1] == ref.descriptors.shape[-1]
    torch.testing.assert_close(desc.norm(dim=-1), torch.ones(len(desc)))


ALL_VIEWS = ("homography0", "homography1", "motorcycle0", "motorcycle1")


@pytest.mark.parametrize(
    "threshold,max_num,views",
    [
        (0.2, -1, ("homography1", "motorcycle0")),
        pytest.param(0.2, -1, ("homography0", "motorcycle1"), marks=pytest.mark.slow),
        pytest.param(0.0, 1024, ALL_VIEWS, marks=pytest.mark.slow),
    ],
)
def test_parity_with_kornia(
    model, n16_weights, real_images, nearest, threshold, max_num, views
):
    """Threshold mode (the default) and top-k mode, on two real image pairs; the
    default run checks one view of each pair, the slow runs the others."""
    ours = ALIKED(
        {"max_num_keypoints": max_num, "detection_threshold": threshold}
    ).eval()
    ref = _reference("aliked-n16", n16_weights, max_num, threshold)
    with torch.inference_mode():
        for label in views:
            image = real_images[label]
            _check_parity(ours({"image": image}), ref(image)[0], label, nearest)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["aliked-n16rot", "aliked-n32", "aliked-t16"])
def test_parity_other_models(name, real_images, nearest, weights_path):
    weights = weights_path(name)
    ours = ALIKED({"model_name": name}).eval()
    ref = _reference(name, weights, -1, 0.2)
    with torch.inference_mode():
        for label in ("homography1", "motorcycle0"):
            image = real_images[label]
            ref_pred = ref(image)[0]
            _check_parity(ours({"image": image}), ref_pred, f"{name} {label}", nearest)


def test_outputs_and_convention(model, homography_pair):
    image = homography_pair["image0"]
    h, w = image.shape[-2:]
    with torch.inference_mode():
        pred = model({"image": image})
    kpts = pred["keypoints"][0]
    assert pred["descriptors"].shape == (1, len(kpts), 128)
    assert pred["keypoint_scores"].shape == (1, len(kpts))
    # scores: the score map (in (0, 1)) at the refined position
    assert ((pred["keypoint_scores"] > 0) & (pred["keypoint_scores"] < 1)).all()
    # maxima are at least nms_radius = 2 pixels from the border; +-2 px soft-argmax
    assert (kpts >= 0.5).all() and (kpts[:, 0] <= w - 0.5).all()
    assert (kpts[:, 1] <= h - 0.5).all()


def test_grey_input_equals_repeated_rgb(model, homography_pair):
    grey = homography_pair["image0"].mean(1, keepdim=True)
    with torch.inference_mode():
        a = model({"image": grey})
        b = model({"image": grey.expand(-1, 3, -1, -1)})
    torch.testing.assert_close(a["keypoints"], b["keypoints"])
    torch.testing.assert_close(a["descriptors"], b["descriptors"])


def test_missing_weights_error(offline_weights):
    with pytest.raises(WeightsError, match="aliked-t16.pth"):
        ALIKED({"model_name": "aliked-t16"})


def test_bad_config():
    with pytest.raises(ConfigError, match="model_name"):
        ALIKED({"model_name": "aliked-x99"})
    with pytest.raises(ConfigError, match="max_num_keypoints"):
        ALIKED({"force_num_keypoints": True})
    with pytest.raises(ConfigError, match="nms_radius"):
        ALIKED({"nms_radius": 0})
    with pytest.raises(ConfigError, match="nms must be 'strict' or 'simple'"):
        ALIKED({"nms": "soft", "weights": None})


def test_simple_nms_keeps_upstreams_flank_points():
    """nms: simple (official ALIKED code, upstream Glue Factory) also keeps a point that
    becomes a maximum once the window of a stronger maximum is suppressed; strict does
    not. (On real images this reproduces upstream's keypoints exactly: docs.)"""
    scores = torch.full((1, 24, 24), 0.01)
    scores[0, 10, 10] = 0.9  # the peak
    scores[0, 10, 11] = 0.85  # inside its window: suppressed by both
    scores[0, 10, 13] = 0.8  # a flank point: 0.85 is in its window
    scores[0, 18, 5] = 0.5  # an isolated maximum: kept by both
    kept = {}
    for nms in ("strict", "simple"):
        m = ALIKED({"nms": nms, "weights": None, "detection_threshold": 0.2})
        idx = m._candidates(scores, None)[0]
        kept[nms] = {(int(i) // 24, int(i) % 24) for i in idx}
    assert kept["strict"] == {(10, 10), (18, 5)}
    assert kept["simple"] == {(10, 10), (10, 13), (18, 5)}


def test_no_threshold_no_limit_keeps_every_maximum(n16_weights, real_crop, nearest):
    """detection_threshold <= 0 or None without max_num_keypoints: every strict maximum
    (not the reference's 'above the mean score' rule), a superset of threshold mode."""
    with torch.inference_mode():
        preds = {
            th: ALIKED({"detection_threshold": th}).eval()({"image": real_crop})
            for th in (None, -1, 0.0, 0.2)
        }
    for th in (-1, 0.0):
        torch.testing.assert_close(preds[th], preds[None], rtol=0, atol=0)
    all_kpts, thresholded = preds[None]["keypoints"][0], preds[0.2]["keypoints"][0]
    scores = preds[None]["keypoint_scores"][0]
    assert len(all_kpts) > 3 * len(thresholded) > 0
    assert scores.min() < 0.05 * scores.mean()  # far below the mean score too
    assert nearest(thresholded, all_kpts).values.max() < 1e-4


def _deform_conv_loops(x, offset, weight, bias, stride, pad, dil, mask):
    """Direct definition (torchvision semantics), one output pixel at a time."""
    b, c, h, w = x.shape
    co, _, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    out = torch.zeros(b, co, ho, wo, dtype=torch.float64)

    def bilinear(img, y, x_):
        y0, x0 = int(torch.floor(y)), int(torch.floor(x_))
        val = torch.zeros(img.shape[0], dtype=torch.float64)
        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
            if 0 <= yy < h and 0 <= xx < w:
                val += img[:, yy, xx] * (1 - abs(y - yy)) * (1 - abs(x_ - xx))
        return val

    for bi in range(b):
        for oy in range(ho):
            for ox in range(wo):
                acc = torch.zeros(co, dtype=torch.float64)
                for ky in range(kh):
                    for kx in range(kw):
                        k = ky * kw + kx
                        y = oy * stride - pad + ky * dil + offset[bi, 2 * k, oy, ox]
                        x_ = (
                            ox * stride - pad + kx * dil + offset[bi, 2 * k + 1, oy, ox]
                        )
                        v = bilinear(x[bi].double(), y.double(), x_.double())
                        if mask is not None:
                            v = v * mask[bi, k, oy, ox]
                        acc += weight[:, :, ky, kx].double() @ v
                out[bi, :, oy, ox] = acc + (0 if bias is None else bias.double())
    return out.float()


@pytest.mark.parametrize(
    "stride,pad,dil,use_mask,size", [(1, 1, 1, False, (6, 7)), (2, 2, 2, True, (7, 5))]
)
def test_deform_conv_matches_definition(stride, pad, dil, use_mask, size):
    g = torch.Generator().manual_seed(0)
    h, w = size
    x = torch.randn(1, 3, h, w, generator=g)
    weight, bias = torch.randn(4, 3, 3, 3, generator=g), torch.randn(4, generator=g)
    ho = (h + 2 * pad - dil * 2 - 1) // stride + 1
    wo = (w + 2 * pad - dil * 2 - 1) // stride + 1
    offset = 2.5 * torch.randn(1, 18, ho, wo, generator=g)  # many taps leave the input
    mask = torch.rand(1, 9, ho, wo, generator=g) if use_mask else None
    ours = deform_conv2d(x, offset, weight, bias, stride, pad, dil, mask)
    ref = _deform_conv_loops(x, offset, weight, bias, stride, pad, dil, mask)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)
    # zero offsets: an ordinary convolution
    zero = deform_conv2d(x, torch.zeros_like(offset), weight, bias, stride, pad, dil)
    conv = torch.nn.functional.conv2d(x, weight, bias, stride, pad, dil)
    torch.testing.assert_close(zero, conv, atol=1e-5, rtol=1e-5)


def test_sparse_feature_sampling_equals_dense_map(model, homography_pair):
    """The descriptor map is never built in full: its pixels computed on demand equal
    the dense map (upsampled, concatenated, normalised), also at padded borders."""
    image = homography_pair["image0"][..., :100, :150]  # not multiples of 32: padded
    with torch.inference_mode():
        _, fmap = model.net(image)
        dense = fmap.dense()[0]
        g = torch.Generator().manual_seed(0)
        px = torch.cat(
            [torch.randint(0, 150, (200,), generator=g), torch.tensor([0, 149])]
        )
        py = torch.cat(
            [torch.randint(0, 100, (200,), generator=g), torch.tensor([0, 99])]
        )
        feats, inv_norm = fmap.at_pixels(0, px, py)
    torch.testing.assert_close(feats * inv_norm[:, None], dense[:, py, px].T)


def test_trainable_gives_gradients(n16_weights):
    model = ALIKED(
        {"trainable": True, "max_num_keypoints": 64, "detection_threshold": 0}
    )
    model.train()
    image = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    pred = model({"image": image})
    (pred["descriptors"].sum() + pred["keypoint_scores"].sum()).backward()
    net = model.net
    for p in (net.block1.conv1.weight, net.block4.conv2.offset_conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert net.desc_head.agg_weights.grad.abs().sum() > 0
