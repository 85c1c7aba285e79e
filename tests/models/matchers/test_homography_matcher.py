"""matchers.homography_matcher: model wrapper, properties, and a real photo pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gluefactory.geometry.homography import sample_homography_corners, warp_points
from gluefactory.models import get_model
from gluefactory.utils.conf import ConfigError


def _matcher(**conf):
    return get_model("matchers.homography_matcher")(conf)


def _scene(seed: int, b: int = 2, m: int = 60, n: int = 50):
    """Random H per batch item; half of kp1 are noisy warps of kp0, the rest random."""
    rng = np.random.default_rng(seed)
    Hs = [
        sample_homography_corners((640, 480), (640, 480), 0.5, rng=rng)[0]
        for _ in range(b)
    ]
    H = torch.from_numpy(np.stack(Hs)).float()
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([640.0, 480.0])
    k0 = torch.rand(b, m, 2, generator=g) * size
    k1 = torch.rand(b, n, 2, generator=g) * size
    k1[:, : n // 2] = (
        warp_points(k0[:, : n // 2], H) + torch.randn(b, n // 2, 2, generator=g) * 2
    )
    return {"keypoints0": k0, "keypoints1": k1, "H_0to1": H}


def _swap(data):
    return {
        "keypoints0": data["keypoints1"],
        "keypoints1": data["keypoints0"],
        "H_0to1": torch.linalg.inv(data["H_0to1"].double()).float(),
        **(
            {"keypoint_mask0": data["keypoint_mask1"]}
            if "keypoint_mask1" in data
            else {}
        ),
        **(
            {"keypoint_mask1": data["keypoint_mask0"]}
            if "keypoint_mask0" in data
            else {}
        ),
    }


def test_defaults_outputs_and_errors():
    model = _matcher()
    assert model.conf.th_positive == 3 and model.conf.th_negative == 3
    out = model(_scene(0))
    assert set(out) == {
        "gt_assignment",
        "gt_matches0",
        "gt_matches1",
        "gt_matching_scores0",
        "gt_matching_scores1",
    }
    assert (
        out["gt_assignment"].shape == (2, 60, 50)
        and out["gt_assignment"].dtype == torch.bool
    )
    assert out["gt_matches0"].dtype == torch.long
    assert (out["gt_matches0"] >= 0).sum() > 20
    with pytest.raises(ConfigError, match="th_negative"):
        _matcher(th_positive=5, th_negative=3)
    with pytest.raises(ConfigError):
        _matcher(th_pos=3)
    with pytest.raises(KeyError, match="H_0to1"):
        model({"keypoints0": torch.zeros(1, 1, 2), "keypoints1": torch.zeros(1, 1, 2)})


def _check_consistent(out):
    a, m0, m1 = out["gt_assignment"], out["gt_matches0"], out["gt_matches1"]
    # never both positive and unmatched; matches0/1 agree with the assignment
    assert not (a.any(-1) & (m0 == -1)).any()
    assert not (a.any(-2) & (m1 == -1)).any()
    assert (a.sum(-1) <= 1).all() and (a.sum(-2) <= 1).all()
    for b in range(a.shape[0]):
        i, j = torch.nonzero(a[b], as_tuple=True)
        assert torch.equal(m0[b, i], j) and torch.equal(m1[b, j], i)
    assert ((m0 >= -2) & (m0 < a.shape[2])).all()
    assert torch.equal(out["gt_matching_scores0"], (m0 >= 0).float())


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(3.0, 3.0), (3.0, 5.0), (1.0, 8.0)]))
def test_consistent_and_symmetric_under_view_swap(seed, ths):
    model = _matcher(th_positive=ths[0], th_negative=ths[1])
    data = _scene(seed)
    out, rev = model(data), model(_swap(data))
    _check_consistent(out)
    _check_consistent(rev)
    assert torch.equal(out["gt_matches0"], rev["gt_matches1"])
    assert torch.equal(out["gt_matches1"], rev["gt_matches0"])
    assert torch.equal(out["gt_assignment"], rev["gt_assignment"].transpose(1, 2))


def test_padded_batch_equals_separate_items():
    model = _matcher()
    a, b = _scene(1, b=1, m=40, n=30), _scene(2, b=1, m=60, n=50)
    k0 = torch.zeros(2, 60, 2)
    k1 = torch.zeros(2, 50, 2)
    k0[0, :40], k0[1] = a["keypoints0"][0], b["keypoints0"][0]
    k1[0, :30], k1[1] = a["keypoints1"][0], b["keypoints1"][0]
    mask0 = torch.arange(60)[None] < torch.tensor([[40], [60]])
    mask1 = torch.arange(50)[None] < torch.tensor([[30], [50]])
    data = {
        "keypoints0": k0,
        "keypoints1": k1,
        "H_0to1": torch.cat([a["H_0to1"], b["H_0to1"]]),
        "keypoint_mask0": mask0,
        "keypoint_mask1": mask1,
    }
    out = model(data)
    ref_a, ref_b = model(a), model(b)
    assert torch.equal(out["gt_matches0"][0, :40], ref_a["gt_matches0"][0])
    assert torch.equal(out["gt_matches1"][0, :30], ref_a["gt_matches1"][0])
    assert (out["gt_matches0"][0, 40:] == -2).all() and (
        out["gt_matches1"][0, 30:] == -2
    ).all()
    assert torch.equal(out["gt_matches0"][1], ref_b["gt_matches0"][0])
    assert not out["gt_assignment"][0, 40:].any()


def test_autocast_is_disabled():
    model = _matcher()
    data = _scene(3)
    ref = model(data)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model({k: v.bfloat16() if k != "H_0to1" else v for k, v in data.items()})
    # bf16 inputs are rounded, but the computation itself runs in float32
    assert out["gt_assignment"].dtype == torch.bool
    agree = (out["gt_matches0"] == ref["gt_matches0"]).float().mean()
    assert agree > 0.9
    with torch.autocast("cpu", dtype=torch.bfloat16):
        exact = model(data)
    assert torch.equal(exact["gt_matches0"], ref["gt_matches0"])


def test_real_photo_sift(homography_pair):
    """SIFT on a real photo and its known warp: positives are right, and plentiful."""
    cv2 = pytest.importorskip("cv2")
    sift = cv2.SIFT_create(nfeatures=1024)

    def detect(img):
        gray = (img[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        kp, des = sift.detectAndCompute(cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY), None)
        pts = (
            torch.tensor([k.pt for k in kp], dtype=torch.float32) + 0.5
        )  # library convention
        return pts, torch.from_numpy(des)

    k0, d0 = detect(homography_pair["image0"])
    k1, d1 = detect(homography_pair["image1"])
    H = homography_pair["H_0to1"]
    out = _matcher()(
        {"keypoints0": k0[None], "keypoints1": k1[None], "H_0to1": H[None]}
    )
    m0 = out["gt_matches0"][0]
    dist = torch.cdist(d0, d1)
    nn01, nn10 = dist.argmin(1), dist.argmin(0)
    mutual = torch.nonzero(nn10[nn01] == torch.arange(len(k0)))[:, 0]
    pos = mutual[m0[mutual] == nn01[mutual]]
    assert len(pos) > 100
    err = (warp_points(k0[pos], H) - k1[nn01[pos]]).norm(dim=-1)
    assert err.max() < 3.0
