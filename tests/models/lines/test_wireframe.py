"""lines.wireframe with ALIKED and XFeat (official weights), and the extractors' dense
descriptors (DISK and SuperPoint-open with random weights)."""

from __future__ import annotations

import pytest
import torch

from gluefactory.models import get_model
from gluefactory.models.extractors.base import DenseDescriptors
from gluefactory.models.utils.keypoints import sample_descriptors
from gluefactory.utils.errors import ConfigError
from gluefactory_nonfree.superpoint import sample_descriptors_legacy

from .conftest import photo

R = 3.0
EXACT = "donot_use_mm_for_euclid_dist"


def _wireframe(point: dict, **lines) -> torch.nn.Module:
    conf = {
        "point_extractor": point,
        "line_extractor": {"name": "lines.lsd", "max_num_lines": 120, **lines},
        "wireframe_params": {"nms_radius": R},
    }
    return get_model("lines.wireframe")(conf).eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return photo("astronaut", (240, 320))


@pytest.fixture(scope="module", params=["aliked", "xfeat"])
def extractor(request) -> dict:
    return {"name": f"extractors.{request.param}", "max_num_keypoints": 300}


def _check_wireframe(pred: dict, i: int, orig_ends: torch.Tensor) -> None:
    """The invariants of one image's wireframe (module docstring of wireframe.py)."""
    j = int(pred["num_junctions"][i])
    kmask, lmask = pred["keypoint_mask"][i], pred["line_mask"][i]
    kpts, idx = pred["keypoints"][i], pred["lines_junc_idx"][i]
    junctions = kpts[:j]
    # lines join junctions, which come first in the point list
    assert (idx[lmask] < j).all()
    assert torch.equal(kpts[idx[lmask]], pred["lines"][i][lmask])
    # each junction is the mean of the endpoints merged into it
    for k in range(j):
        ends = orig_ends[idx.flatten()[: len(orig_ends)] == k]
        if len(ends):
            assert torch.allclose(junctions[k], ends.mean(0), atol=1e-4)
    # no remaining keypoint is closer than nms_radius to a junction
    rest = kpts[j:][kmask[j:]]
    if len(rest) and j:
        d = torch.cdist(rest.double(), junctions.double(), compute_mode=EXACT)
        assert d.min() >= R
    assert kmask[:j].all()


def test_wireframe_structure(extractor, image):
    model = _wireframe(extractor)
    with torch.inference_mode():
        pred = model({"image": image})
        points, dense = model.point_extractor.extract_dense({"image": image})
    n_lines = int(pred["line_mask"].sum())
    assert n_lines >= 50 and pred["num_junctions"][0] > n_lines  # mostly free ends
    orig = pred["orig_lines"][0]
    ends = orig.reshape(-1, 2)
    _check_wireframe(pred, 0, ends)
    # endpoints at most nms_radius apart share a junction (DBSCAN's rule)
    idx = pred["lines_junc_idx"][0].reshape(-1)
    d = torch.cdist(ends.double(), ends.double(), compute_mode=EXACT)
    close = d <= R
    assert (idx[:, None] == idx[None])[close].all()
    # descriptors: the extractor's own description, at junctions and keypoints alike
    kpts = pred["keypoints"][0]
    expect = dense.sample(kpts[None])[0]
    assert torch.allclose(pred["descriptors"][0], expect, atol=1e-5)
    # the kept keypoints are the extractor's, with their own descriptors and scores
    j = int(pred["num_junctions"][0])
    own = {tuple(k.tolist()): n for n, k in enumerate(points["keypoints"][0])}
    kept = [own[tuple(k.tolist())] for k in kpts[j:]]
    assert torch.allclose(
        pred["descriptors"][0, j:], points["descriptors"][0, kept], atol=1e-5
    )
    assert torch.equal(
        pred["keypoint_scores"][0, j:], points["keypoint_scores"][0, kept]
    )
    assert pred["line_scores"][0].max() == pytest.approx(1.0)


def test_batch_equals_single_images(extractor, image):
    model = _wireframe(extractor)
    images = torch.cat([image, image.flip(-1)])
    with torch.inference_mode():
        batch = model({"image": images})
        for i in range(2):
            one = model({"image": images[i : i + 1]})
            n = one["keypoints"].shape[1]
            assert batch["keypoint_mask"][i, :n].all()
            assert not batch["keypoint_mask"][i, n:].any()
            for key in ("keypoints", "keypoint_scores"):
                assert torch.equal(batch[key][i, :n], one[key][0]), key
            assert torch.allclose(batch["descriptors"][i, :n], one["descriptors"][0])
            for key in ("lines", "orig_lines", "line_mask", "lines_junc_idx"):
                assert torch.equal(batch[key][i], one[key][0]), key
            _check_wireframe(batch, i, batch["orig_lines"][i].reshape(-1, 2))


def test_forced_counts_are_fixed(image):
    point = {"name": "extractors.xfeat", "max_num_keypoints": 200}
    point["force_num_keypoints"], point["seed"] = True, 0
    model = _wireframe(point, force_num_lines=True)
    with torch.inference_mode():
        pred = model({"image": torch.cat([image, image.flip(-2)])})
    assert pred["keypoints"].shape == (2, 200 + 2 * 120, 2)
    assert pred["lines"].shape == (2, 120, 2, 2)
    padded = ~pred["keypoint_mask"]
    assert (pred["keypoint_scores"][padded] == 0).all()


def test_point_extractor_without_dense_descriptors_is_refused():
    with pytest.raises(ConfigError, match="dense descriptors"):
        get_model("lines.wireframe").build_conf(
            {"point_extractor": {"name": "extractors.sift"}}
        )
    with pytest.raises(ConfigError, match="dense descriptors"):
        get_model("lines.wireframe").build_conf(
            {"point_extractor": {"name": "extractors.xfeat", "dense": True}}
        )
    with pytest.raises(ConfigError, match="does not output lines"):
        get_model("lines.wireframe").build_conf(
            {
                "point_extractor": {"name": "extractors.xfeat"},
                "line_extractor": {"name": "extractors.xfeat"},
            }
        )
    with pytest.raises(ConfigError, match="dense descriptors"):
        get_model("extractors.sift")({}).extract_dense(
            {"image": torch.rand(1, 1, 64, 64)}
        )


def test_describe_carries_lines():
    conf = {"point_extractor": {"name": "extractors.aliked"}}
    assert get_model("lines.wireframe").describe(conf) == {
        "descriptor_dim": 128,
        "scales": False,
        "orientations": False,
        "lines": True,
    }


# ----------------------------------------------------------------- dense descriptors
@pytest.mark.parametrize(
    "name",
    ["extractors.superpoint_open", "gluefactory_nonfree.superpoint", "extractors.disk"],
)
def test_dense_descriptors_with_random_weights(name, image):
    """Dense descriptors at the detected keypoints are the keypoints' descriptors;
    for the SuperPoints they are their own interpolation of their dense map anywhere
    (bilinear for the open one, Magic Leap's legacy sampling for the original)."""
    conf = {"weights": None, "max_num_keypoints": 100}
    if "superpoint" in name:
        conf["dense_outputs"] = True
    model = get_model(name)(conf).eval()
    with torch.inference_mode():
        pred, dense = model.extract_dense({"image": image})
        assert isinstance(dense, DenseDescriptors) and dense.batch_size == 1
        assert torch.allclose(dense.sample(pred["keypoints"]), pred["descriptors"])
        anywhere = torch.rand(1, 50, 2) * torch.tensor([320.0, 240.0])
        desc = dense.sample(anywhere)
        assert desc.shape == (1, 50, pred["descriptors"].shape[-1])
        assert torch.allclose(desc.norm(dim=-1), torch.ones(1, 50), atol=1e-5)
        if "dense_descriptors" in pred:  # each SuperPoint's own interpolation
            sampler = sample_descriptors
            if name.startswith("gluefactory_nonfree"):  # legacy_sampling: true
                sampler = sample_descriptors_legacy
            ref = sampler(pred["dense_descriptors"], anywhere, stride=8)
            assert torch.allclose(desc, ref, atol=1e-6)
        assert dense.sample_one(0, anywhere[0, :0]).shape == (0, desc.shape[-1])
