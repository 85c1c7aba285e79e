"""matchers.depth_matcher: synthetic planar scenes and the real Middlebury pair."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gluefactory.geometry.coordinates import pixel_centers
from gluefactory.geometry.depth import project, render_depth
from gluefactory.geometry.wrappers import Camera, Pose
from gluefactory.models import get_model
from gluefactory.models.base_model import MissingDataError
from gluefactory.utils.conf import ConfigError

W, H = 320, 240
NORMAL = torch.tensor([-0.1, -0.05, 1.0], dtype=torch.float64)  # plane NORMAL . X = 6


def _matcher(**conf):
    return get_model("matchers.depth_matcher")(conf)


@functools.lru_cache(maxsize=1)
def _pixel_rays(cam_params: tuple) -> torch.Tensor:
    cam = Camera(torch.tensor(cam_params, dtype=torch.float64))
    return cam.unproject(pixel_centers(H, W, dtype=torch.float64).reshape(-1, 2))


def _plane_depth(cam: Camera, n: torch.Tensor, c: float) -> torch.Tensor:
    """Depth map (H, W) of the plane n . X = c (camera frame); 0 where behind."""
    rays = _pixel_rays(tuple(cam._data.tolist()))
    z = c / (rays @ n)
    return torch.where(z > 0, z, torch.zeros_like(z)).reshape(H, W).float()


def _scene(seed: int, b: int = 2, m: int = 60, n: int = 50, holes: bool = True):
    """Tilted plane, random pose; half of kp1 are noisy projections of kp0."""
    g = torch.Generator().manual_seed(seed)
    cams, poses, depths0, depths1, k0s, k1s = [], [], [], [], [], []
    for _ in range(b):
        cam = Camera.from_params(W, H, 250.0, 250.0, W / 2, H / 2, dtype=torch.float64)
        T = Pose.from_aa(
            torch.randn(3, generator=g, dtype=torch.float64) * 0.05,
            torch.randn(3, generator=g, dtype=torch.float64) * 0.4,
        )
        R, t = T.R, T.t
        d0 = _plane_depth(cam, NORMAL, 6.0)
        m1 = R @ NORMAL
        d1 = _plane_depth(cam, m1, float(6.0 + m1 @ t))
        if holes:
            d0[100:140, 50:120] = 0
            d1[20:60, 200:260] = 0
        k0 = torch.rand(m, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H])
        k1 = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([W, H])
        p3d = cam.unproject(k0[: n // 2], _depth_on_plane(cam, k0[: n // 2]))
        proj, _ = cam.project(T.transform(p3d))
        k1[: n // 2] = proj + torch.randn(n // 2, 2, generator=g, dtype=torch.float64)
        cams.append(cam.float())
        poses.append(T.float())
        depths0.append(d0)
        depths1.append(d1)
        k0s.append(k0.float())
        k1s.append(k1.float())
    T = Pose.stack(poses)
    return {
        "keypoints0": torch.stack(k0s),
        "keypoints1": torch.stack(k1s),
        "view0": {"camera": Camera.stack(cams), "depth": torch.stack(depths0)},
        "view1": {"camera": Camera.stack(cams), "depth": torch.stack(depths1)},
        "T_0to1": T,
        "T_1to0": T.inv(),
    }


def _depth_on_plane(cam, k):
    return 6.0 / (cam.unproject(k) @ NORMAL)


def _swap(data):
    out = {
        "keypoints0": data["keypoints1"],
        "keypoints1": data["keypoints0"],
        "view0": data["view1"],
        "view1": data["view0"],
        "T_0to1": data["T_1to0"],
        "T_1to0": data["T_0to1"],
    }
    for i, j in ((0, 1), (1, 0)):
        if f"keypoint_mask{j}" in data:
            out[f"keypoint_mask{i}"] = data[f"keypoint_mask{j}"]
    return out


def test_defaults_and_errors():
    model = _matcher()
    assert (model.conf.th_positive, model.conf.th_negative, model.conf.th_epi) == (
        3,
        5,
        5,
    )
    assert model.conf.th_consistency is None
    assert _matcher(th_epi=None).conf.th_epi is None
    with pytest.raises(ConfigError, match="th_negative"):
        _matcher(th_positive=6)
    data = _scene(0)
    del data["view1"]["depth"]
    with pytest.raises(MissingDataError, match="view1.depth"):
        model(data)


def test_planar_scene_recovers_projections():
    data = _scene(0, holes=False)
    out = _matcher()(data)
    m0 = out["gt_matches0"]
    # kp0[:25] were projected (+ N(0, 1) px noise) to kp1[:25]
    found = (m0[:, :25] == torch.arange(25)).float().mean()
    assert found > 0.7
    assert (m0[:, 25:] >= 0).sum() <= 4  # random points rarely fall within 3 px
    assert (m0 == -1).sum() > 30


def _check_consistent(out):
    a, m0, m1 = out["gt_assignment"], out["gt_matches0"], out["gt_matches1"]
    assert not (a.any(-1) & (m0 == -1)).any()
    assert not (a.any(-2) & (m1 == -1)).any()
    assert (a.sum(-1) <= 1).all() and (a.sum(-2) <= 1).all()
    for b in range(a.shape[0]):
        i, j = torch.nonzero(a[b], as_tuple=True)
        assert torch.equal(m0[b, i], j) and torch.equal(m1[b, j], i)


@settings(max_examples=10, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([5.0, None]),
    st.sampled_from([None, 2.0]),
)
def test_consistent_and_symmetric_under_view_swap(seed, th_epi, th_consistency):
    model = _matcher(th_epi=th_epi, th_consistency=th_consistency)
    data = _scene(seed)
    data["keypoint_mask0"] = (
        torch.rand(2, 60, generator=torch.Generator().manual_seed(seed)) > 0.1
    )
    out, rev = model(data), model(_swap(data))
    _check_consistent(out)
    assert torch.equal(out["gt_matches0"], rev["gt_matches1"])
    assert torch.equal(out["gt_matches1"], rev["gt_matches0"])
    assert torch.equal(out["gt_assignment"], rev["gt_assignment"].transpose(1, 2))
    assert (out["gt_matches0"][~data["keypoint_mask0"]] == -2).all()


def test_holes_are_ignored_or_epipolar_negatives():
    data = _scene(5)
    in_hole = (data["view0"]["depth"][0] == 0)[
        data["keypoints0"][0, :, 1].long(), data["keypoints0"][0, :, 0].long()
    ]
    assert in_hole.any()
    no_epi = _matcher(th_epi=None)(data)["gt_matches0"][0]
    assert (no_epi[in_hole] == -2).all()  # no depth, no epipolar test: never labelled
    epi = _matcher(th_epi=5.0)(data)["gt_matches0"][0]
    assert (epi[in_hole] == -1).sum() >= (no_epi[in_hole] == -1).sum()
    assert torch.equal(epi[~in_hole], no_epi[~in_hole])


def _middlebury(pair):
    disp = pair["disparity"]
    known = torch.isfinite(disp)
    depth0 = torch.where(
        known, pair["baseline"] * pair["f"] / (disp + pair["doffs"]), 0.0
    )
    f, cx, cy, h, w = pair["f"], pair["cx"], pair["cy"], *disp.shape
    # Middlebury's principal point has pixel centres at integers -> + 0.5 (library
    # convention); doffs = cx1 - cx0. The right camera sits at +baseline along x.
    cam0 = Camera.from_params(w, h, f, f, cx + 0.5, cy + 0.5)
    cam1 = Camera.from_params(w, h, f, f, cx + pair["doffs"] + 0.5, cy + 0.5)
    T = Pose.from_Rt(torch.eye(3), torch.tensor([-pair["baseline"], 0.0, 0.0]))
    # Only the left disparity exists: render the right depth by z-buffered splatting.
    depth1 = render_depth(depth0, cam0, cam1, T)
    return disp, depth0, depth1, cam0, cam1, T


def _sift(img: torch.Tensor, n: int):
    cv2 = pytest.importorskip("cv2")
    gray = cv2.cvtColor(
        (img[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY
    )
    kp, des = cv2.SIFT_create(nfeatures=n).detectAndCompute(gray, None)
    pts = (
        torch.tensor([k.pt for k in kp], dtype=torch.float32) + 0.5
    )  # OpenCV -> library
    return pts, torch.from_numpy(des)


def test_middlebury_sift_positives_reproject_within_3px(motorcycle_pair):
    """Real stereo pair: SIFT mutual-NN matches labelled positive reproject within 3 px.

    The error is measured through the true depth (our projection) and, independently,
    with the raw Middlebury disparity (x_right = x_left - d at the containing pixel).
    """
    disp, depth0, depth1, cam0, cam1, T = _middlebury(motorcycle_pair)
    assert depth0.shape == (500, 741)
    k0, d0 = _sift(motorcycle_pair["image0"], 2048)
    k1, d1 = _sift(motorcycle_pair["image1"], 2048)
    data = {
        "keypoints0": k0[None],
        "keypoints1": k1[None],
        "view0": {"camera": cam0[None], "depth": depth0[None]},
        "view1": {"camera": cam1[None], "depth": depth1[None]},
        "T_0to1": T[None],
    }
    out = _matcher()(data)
    m0 = out["gt_matches0"][0]
    dist = torch.cdist(d0, d1)
    nn01, nn10 = dist.argmin(1), dist.argmin(0)
    mutual = torch.nonzero(nn10[nn01] == torch.arange(len(k0)))[:, 0]
    pos = mutual[m0[mutual] == nn01[mutual]]
    assert len(pos) > 100, len(pos)
    p0, p1 = k0[pos], k1[nn01[pos]]
    proj, vis = project(p0[None], depth0[None], None, T[None], cam0[None], cam1[None])
    assert vis.all()
    assert (proj[0] - p1).norm(dim=-1).max() < 3.0
    ix = torch.floor(p0).long()
    dx = disp[ix[:, 1], ix[:, 0]]
    assert torch.isfinite(dx).all()
    err = torch.stack([p0[:, 0] - dx - p1[:, 0], p0[:, 1] - p1[:, 1]], -1).norm(dim=-1)
    assert err.median() < 1.0 and (err < 3.0).float().mean() > 0.98
    # descriptor matches labelled unmatched are really wrong
    neg = mutual[m0[mutual] == -1]
    ixn = torch.floor(k0[neg]).long()
    dn = disp[ixn[:, 1], ixn[:, 0]]
    known = torch.isfinite(dn)
    errn = (torch.stack([k0[neg, 0] - dn, k0[neg, 1]], -1) - k1[nn01[neg]]).norm(dim=-1)
    assert (errn[known] > 5.0).all()


def test_pose_as_matrix_and_autocast():
    data = _scene(2)
    model = _matcher()
    ref = model(data)
    as_mat = {
        **data,
        "T_0to1": data["T_0to1"].matrix(),
        "T_1to0": data["T_1to0"].matrix(),
    }
    assert torch.equal(model(as_mat)["gt_matches0"], ref["gt_matches0"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(data)
    assert torch.equal(out["gt_matches0"], ref["gt_matches0"])
    assert torch.equal(out["gt_matches1"], ref["gt_matches1"])
