"""SIFT extractor: conventions (checked against raw OpenCV and COLMAP), RootSIFT, NMS,
padding, batching and configuration errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.extractors.sift import (
    _rootsift_np,
    filter_detections,
    sift_to_rootsift,
)

SIFT = get_model("extractors.sift")


def _grey_uint8(image: torch.Tensor) -> np.ndarray:
    rgb = (image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def test_matches_raw_opencv(homography_pair, nearest):
    """Without NMS our keypoints are OpenCV's (+0.5), scales size / 2, orientations
    deg2rad(angle) wrapped to [-pi, pi), descriptors RootSIFT of OpenCV's."""
    grey = _grey_uint8(homography_pair["image0"])  # both get the same uint8 image
    model = SIFT({"nms_radius": None, "max_num_keypoints": 1024})
    pred = model({"image": torch.from_numpy(grey)[None, None] / 255.0})
    sift = cv2.SIFT_create(
        nfeatures=1024,
        contrastThreshold=0.02,
        edgeThreshold=10,
        enable_precise_upscale=True,
    )
    kps, desc = sift.detectAndCompute(grey, None)
    # OpenCV keeps the keypoints tied with the 1024th best; we cut at exactly 1024
    assert pred["keypoints"].shape[1] == min(len(kps), 1024) == 1024
    order = np.argsort([-k.response for k in kps], kind="stable")[:1024]
    kps, desc = [kps[i] for i in order], desc[order]
    ref = torch.tensor([k.pt for k in kps]) + 0.5
    dist, idx = nearest(pred["keypoints"][0], ref)
    assert dist.max() < 1e-5
    sizes = torch.tensor([k.size for k in kps])[idx]
    torch.testing.assert_close(pred["scales"][0], sizes / 2)
    torch.testing.assert_close(
        pred["keypoint_scores"][0], torch.tensor([k.response for k in kps])[idx]
    )
    # a location detected with several orientations makes idx ambiguous: skip those
    keep = (ref[:, None] == ref[None]).all(-1).sum(1)[idx] == 1
    assert keep.float().mean() > 0.5
    angles = torch.deg2rad(torch.tensor([k.angle for k in kps])[idx[keep]])
    diff = torch.remainder(pred["oris"][0][keep] - angles, 2 * torch.pi)
    assert torch.minimum(diff, 2 * torch.pi - diff).max() < 1e-5
    assert (pred["oris"] >= -torch.pi).all() and (pred["oris"] < torch.pi).all()
    root = sift_to_rootsift(torch.from_numpy(desc)[idx[keep]])
    torch.testing.assert_close(pred["descriptors"][0][keep], root, atol=1e-5, rtol=1e-4)


def test_agrees_with_colmap(homography_pair, nearest):
    """OpenCV (+0.5, size / 2, deg2rad) and COLMAP agree on positions to < 0.1 px,
    on scale and on orientation: the conventions of both backends are the same."""
    pytest.importorskip("pycolmap")
    image = homography_pair["image0"]
    cv = SIFT({"max_num_keypoints": 2048})({"image": image})
    colmap = SIFT({"backend": "pycolmap_cpu", "max_num_keypoints": 2048})(
        {"image": image}
    )
    dist, idx = nearest(cv["keypoints"][0], colmap["keypoints"][0])
    close = dist < 1.0
    assert close.float().mean() > 0.7
    offset = colmap["keypoints"][0][idx[close]] - cv["keypoints"][0][close]
    assert offset.median(0).values.abs().max() < 0.1
    ratio = colmap["scales"][0][idx[close]] / cv["scales"][0][close]
    assert abs(ratio.median() - 1) < 0.05
    diff = torch.remainder(
        colmap["oris"][0][idx[close]] - cv["oris"][0][close], 2 * torch.pi
    )
    assert torch.minimum(diff, 2 * torch.pi - diff).median() < 0.1


def test_rootsift():
    desc = torch.rand(10, 128) * 100
    desc[0] = 0
    root = sift_to_rootsift(desc)
    torch.testing.assert_close(root[1:].norm(dim=-1), torch.ones(9))
    torch.testing.assert_close(root[1:] ** 2, desc[1:] / desc[1:].sum(-1, keepdim=True))
    assert (root[0] == 0).all()
    torch.testing.assert_close(torch.from_numpy(_rootsift_np(desc.numpy())), root)


def test_filter_detections():
    kpts = np.array([[5.2, 5.7], [5.9, 5.1], [7.5, 5.5], [20.5, 20.5], [1.5, 1.5]])
    scores = np.array([1.0, 2.0, 1.5, 0.5, 3.0])
    oris = np.zeros(5)
    keep = filter_detections(kpts, scores, oris, (30, 30), 0)
    assert keep.tolist() == [4, 1, 2, 3]  # one per pixel, sorted by score
    keep = filter_detections(kpts, scores, oris, (30, 30), 2)
    assert keep.tolist() == [4, 1, 3]  # (7.5, 5.5) is within 2 px of a better one
    same_pixel = np.array([[3.2, 3.2], [3.4, 3.6]])
    keep = filter_detections(same_pixel, np.ones(2), np.array([2.0, -0.5]), (9, 9), 0)
    assert keep.tolist() == [1]  # tie on score: smallest |orientation|


@pytest.mark.parametrize("nms_radius", [0, 3])
def test_nms(homography_pair, nms_radius):
    pred = SIFT({"nms_radius": nms_radius})({"image": homography_pair["image0"]})
    pix = torch.floor(pred["keypoints"][0]).long()
    cheb = (pix[:, None] - pix[None]).abs().max(-1).values
    cheb.fill_diagonal_(10**6)
    assert cheb.min() > nms_radius
    scores = pred["keypoint_scores"][0]
    assert (scores[1:] <= scores[:-1]).all()


@pytest.mark.parametrize("backend", ["opencv", "pycolmap_cpu"])
@pytest.mark.parametrize("n", [256, 5000])
def test_force_num_keypoints(homography_pair, backend, n):
    if backend.startswith("pycolmap"):
        pytest.importorskip("pycolmap")
    image = homography_pair["image0"]
    conf = {"backend": backend, "max_num_keypoints": n, "nms_radius": 3}
    plain = SIFT(conf)({"image": image})
    pred = SIFT({**conf, "force_num_keypoints": True})({"image": image})
    for key, dim in [("keypoints", 2), ("descriptors", 128)]:
        assert pred[key].shape == (1, n, dim)
    for key in ("keypoint_scores", "scales", "oris", "keypoint_mask"):
        assert pred[key].shape == (1, n)
    num = plain["keypoints"].shape[1]
    valid = pred["keypoint_mask"][0]
    assert valid.sum() == num and valid[:num].all() and num <= n
    torch.testing.assert_close(pred["keypoints"][0, :num], plain["keypoints"][0])
    h, w = image.shape[-2:]
    k = pred["keypoints"][0]
    assert (k >= 0).all() and (k[:, 0] < w).all() and (k[:, 1] < h).all()
    for key in ("keypoint_scores", "scales", "oris", "descriptors"):
        assert (pred[key][0][~valid] == 0).all()


def test_image_size_crops_padding(homography_pair):
    image = homography_pair["image0"]
    h, w = image.shape[-2:]
    padded = torch.nn.functional.pad(image, (0, 40, 0, 30), value=1.0)
    pred = SIFT()({"image": padded, "image_size": torch.tensor([[w, h]])})
    plain = SIFT()({"image": image})
    torch.testing.assert_close(pred["keypoints"], plain["keypoints"])


def test_grey_input(homography_pair):
    image = homography_pair["image0"]
    grey = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, True)
    a = SIFT()({"image": image})
    b = SIFT()({"image": grey})
    torch.testing.assert_close(a["keypoints"], b["keypoints"])


def test_config_errors():
    with pytest.raises(ValueError, match="backend"):
        SIFT({"backend": "vlfeat"})
    with pytest.raises(ValueError, match="first_octave"):
        SIFT({"first_octave": 0})
    with pytest.raises(ValueError, match="max_num_keypoints"):
        SIFT({"force_num_keypoints": True, "max_num_keypoints": 0})
    with pytest.raises(ValueError, match="image"):
        SIFT()({"image": torch.rand(1, 2, 32, 32)})
    with pytest.raises(ValueError, match="trainable"):
        SIFT({"trainable": True})
    with pytest.raises(ValueError, match="remove_borders"):
        SIFT({"nms_radius": None, "remove_borders": 4})


def test_pycolmap_cuda_unavailable():
    pycolmap = pytest.importorskip("pycolmap")
    if getattr(pycolmap, "has_cuda", False):
        pytest.skip("this pycolmap has CUDA")
    with pytest.raises(ValueError, match="without CUDA"):
        SIFT({"backend": "pycolmap_cuda"})


def test_blank_image():
    """No detection at all: plain output is empty, forced output is all padding."""
    blank = torch.full((1, 1, 64, 80), 0.5)
    assert SIFT()({"image": blank})["keypoints"].shape == (1, 0, 2)
    pred = SIFT({"max_num_keypoints": 32, "force_num_keypoints": True})(
        {"image": blank}
    )
    assert pred["keypoints"].shape == (1, 32, 2) and not pred["keypoint_mask"].any()
    assert (pred["descriptors"] == 0).all()
