"""MegaDepth dataset and the posed-images -> MegaDepth converter, on the real Middlebury
Motorcycle pair (calibration from tests/conftest.py) and on synthetic scene_info files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset, megadepth
from gluefactory.datasets.megadepth import SCENE_LISTS, read_scene_list, sample_pairs
from gluefactory.datasets.sources.megadepth_convert import convert
from gluefactory.formats.posed import read_views
from gluefactory.models import get_model
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.tensor import collate

_HELPER = Path(__file__).with_name("posed_motorcycle.py")
_spec = importlib.util.spec_from_file_location("posed_motorcycle", _HELPER)
posed_motorcycle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(posed_motorcycle)


@pytest.fixture(scope="module")
def md_tree(tmp_path_factory, motorcycle_pair):
    root = tmp_path_factory.mktemp("posed")
    depth0 = posed_motorcycle.write_posed_motorcycle(root, motorcycle_pair)
    dst = tmp_path_factory.mktemp("megadepth")
    summary = convert(root, dst, stride=4)
    return {"src": root, "dst": dst, "summary": summary, "depth0": depth0}


def _conf(dst, **kw):
    conf = {
        "data_dir": str(dst),
        "train_split": ["motorcycle"],
        "train_num_per_scene": None,
        "val_split": ["motorcycle"],
        "min_overlap": 0.1,
        "preprocessing": {"resize": 512},
    }
    conf.update(kw)
    return conf


def test_converter_layout_and_overlap(md_tree):
    dst = md_tree["dst"]
    assert md_tree["summary"][0]["with_depth"] == 2
    info = np.load(dst / "scene_info" / "motorcycle.npz", allow_pickle=True)
    assert list(info["image_paths"]) == [
        "Undistorted_SfM/motorcycle/images/left.png",
        "Undistorted_SfM/motorcycle/images/right.png",
    ]
    assert (dst / info["image_paths"][0]).is_file()
    assert (dst / info["depth_paths"][1]).is_file()
    ov = info["overlap_matrix"]
    assert ov[0, 0] == ov[1, 1] == 1
    # almost all of the scene is seen by both cameras (the splatted right depth has holes)
    assert 0.7 < ov[0, 1] <= 1 and 0.7 < ov[1, 0] <= 1, ov
    torch.testing.assert_close(info["poses"][1][:3, 3], np.array([-0.193001, 0, 0]))
    assert (dst / "pairs.txt").read_text() == (
        "motorcycle/images/left.png motorcycle/images/right.png\n"
    )
    with h5py.File(dst / "depth_undistorted/motorcycle/left.h5") as f:
        np.testing.assert_array_equal(f["depth"][()], md_tree["depth0"])


def test_pair_geometry_is_pixel_exact(md_tree, motorcycle_pair):
    """Left pixel centres, lifted with the dataset's camera and depth and moved by
    T_0to1, land where the real disparity says, in the resized images."""
    split = get_dataset("megadepth")(_conf(md_tree["dst"])).get_dataset("train")
    assert len(split) == 1
    data = split[0]
    v0, v1 = data["view0"], data["view1"]
    assert data["name"] == "motorcycle/left_right"
    assert v0["image"].shape == (3, 512, 512)  # long side 512, square padded
    assert v0["image_size"].tolist() == [512, 345]
    assert v0["original_image_size"].tolist() == [741, 500]
    sx, sy = v0["scales"].tolist()
    assert v0["image"][:, 345:].abs().max() == 0 and v0["depth"][345:].max() == 0
    torch.testing.assert_close(v0["camera"].size, v0["image_size"])
    disp = motorcycle_pair["disparity"]
    v, u = torch.nonzero(torch.isfinite(disp), as_tuple=True)
    sel = torch.arange(0, len(u), 997)
    u, v = u[sel].double(), v[sel].double()
    d = disp[v.long(), u.long()].double()
    p0 = torch.stack([(u + 0.5) * sx, (v + 0.5) * sy], -1)
    z = torch.from_numpy(md_tree["depth0"]).double()[v.long(), u.long()]
    cam0, cam1 = v0["camera"].double(), v1["camera"].double()
    X1 = data["T_0to1"].double().transform(cam0.unproject(p0, z))
    p1, ok = cam1.project(X1)
    expected = torch.stack([(u + 0.5 - d) * sx, (v + 0.5) * sy], -1)
    assert ok.all()
    assert (p1 - expected).abs().max() < 1e-3
    # the resized depth map is the nearest-neighbour resize (0 = unknown)
    assert (v0["depth"] > 0).float().mean() > 0.5
    torch.testing.assert_close(data["T_1to0"].matrix(), data["T_0to1"].inv().matrix())


def test_depth_matcher_ground_truth_on_real_pair(md_tree, motorcycle_pair):
    split = get_dataset("megadepth")(_conf(md_tree["dst"])).get_dataset("train")
    data = collate([split[0]])
    disp = motorcycle_pair["disparity"]
    g = torch.Generator().manual_seed(0)
    v, u = torch.nonzero(torch.isfinite(disp), as_tuple=True)
    sel = torch.randperm(len(u), generator=g)[:300]
    u, v = u[sel].float(), v[sel].float()
    d = disp[v.long(), u.long()]
    sx, sy = data["view0"]["scales"][0].tolist()
    k0 = torch.stack([(u + 0.5) * sx, (v + 0.5) * sy], -1)
    k1 = torch.stack([(u + 0.5 - d) * sx, (v + 0.5) * sy], -1)
    k1 = k1 + 0.3 * torch.randn(k1.shape, generator=g)
    perm = torch.randperm(300, generator=g)
    gt = get_model("matchers.depth_matcher")({})(
        {**data, "keypoints0": k0[None], "keypoints1": k1[perm][None]}
    )
    m0 = gt["gt_matches0"][0]
    pos = m0 >= 0
    assert pos.float().mean() > 0.8  # most points have a valid depth and a partner
    inv = torch.argsort(perm)
    assert (m0[pos] == inv[pos]).all()  # and every positive is the right one


def test_fixed_pairs_and_single_views(md_tree):
    dst = md_tree["dst"]
    split = get_dataset("megadepth")(
        _conf(dst, val_pairs=str(dst / "pairs.txt"))
    ).get_dataset("val")
    assert [it[:3] for it in split.items] == [("motorcycle", 0, 1)]
    single = get_dataset("megadepth")(
        _conf(dst, views=1, read_depth=False)
    ).get_dataset("train")
    assert len(single) == 2
    item = single[1]
    assert item["name"] == "motorcycle/right.png" and item["image"].shape == (
        3,
        512,
        512,
    )
    assert "depth" not in item and "camera" in item
    bad = dst / "bad_pairs.txt"
    bad.write_text("motorcycle/images/left.png motorcycle/images/nope.png\n")
    with pytest.raises(
        DataError, match="bad_pairs.txt:1: image motorcycle/images/nope.png"
    ):
        get_dataset("megadepth")(_conf(dst, val_pairs=str(bad))).get_dataset("val")
    bad.write_text(  # an image paired with itself (was accepted)
        "motorcycle/images/left.png motorcycle/images/right.png\n"
        "motorcycle/images/left.png motorcycle/images/left.png\n"
    )
    with pytest.raises(
        DataError,
        match="bad_pairs.txt:2: image motorcycle/images/left.png appears twice",
    ):
        get_dataset("megadepth")(_conf(dst, val_pairs=str(bad))).get_dataset("val")


def test_errors(md_tree, tmp_path):
    with pytest.raises(
        DataError, match="MegaDepth not found.*training_downloads megadepth"
    ):
        get_dataset("megadepth")(_conf(tmp_path / "nothing"))
    with pytest.raises(DataError, match="scene_info of scene 9999 not found"):
        get_dataset("megadepth")(
            _conf(md_tree["dst"], train_split=["9999"])
        ).get_dataset("train")
    with pytest.raises(
        DataError, match=r"no pair of the train split has an overlap in \(0.1, 0.2\]"
    ):
        get_dataset("megadepth")(_conf(md_tree["dst"], max_overlap=0.2)).get_dataset(
            "train"
        )
    with pytest.raises(ConfigError, match="min_overlap"):
        get_dataset("megadepth")(
            _conf(md_tree["dst"], min_overlap=0.9, max_overlap=0.5)
        )
    with pytest.raises(ConfigError, match="scene list file not found"):
        get_dataset("megadepth")(
            _conf(md_tree["dst"], train_split="nope.txt")
        ).get_dataset("train")
    views = tmp_path / "views.txt"
    views.write_text("a.png 1 0 0 0 1 0 0 0 1 0 0 0 OPENCV 10 10 5 5 5 5 0.1 0 0 0\n")
    with pytest.raises(DataError, match="distorted camera"):
        read_views(views)


def _fake_scene(root, n=30, seed=0):
    """scene_info with a random symmetric overlap matrix (no image files needed)."""
    rng = np.random.default_rng(seed)
    ov = rng.uniform(0, 1, (n, n))
    ov = (ov + ov.T) / 2
    (root / "scene_info").mkdir(parents=True, exist_ok=True)
    paths = np.array(
        [f"Undistorted_SfM/s/images/{i}.jpg" for i in range(n)], dtype=object
    )
    depths = np.array([f"d/{i}.h5" if i % 10 else None for i in range(n)], dtype=object)
    np.savez(
        root / "scene_info" / "s.npz", image_paths=paths, depth_paths=depths,
        intrinsics=np.tile(np.eye(3), (n, 1, 1)), poses=np.tile(np.eye(4), (n, 1, 1)),
        overlap_matrix=ov,
    )  # fmt: skip
    return ov


def test_pairs_in_overlap_bins_redrawn_each_epoch(tmp_path):
    ov = _fake_scene(tmp_path)
    conf = {
        "data_dir": str(tmp_path), "train_split": ["s"], "train_num_per_scene": 60,
        "min_overlap": 0.1, "max_overlap": 0.7, "num_overlap_bins": 3,
    }  # fmt: skip
    split = get_dataset("megadepth")(conf).get_dataset("train")
    first = list(split.items)
    assert len(first) == 60
    assert all(
        i % 10 and j % 10 for _, i, j, _ in first
    )  # images without depth skipped
    o = np.array([it[3] for it in first])
    assert ((o > 0.1) & (o <= 0.7)).all()
    for i, j in [(it[1], it[2]) for it in first]:
        assert i != j and np.isclose(
            min(ov[i, j], ov[j, i]),
            o[first.index(next(t for t in first if t[1:3] == (i, j)))],
        )
    counts = np.histogram(o, bins=[0.1, 0.3, 0.5, 0.7])[0]
    assert (counts == 20).all(), counts  # 20 per bin
    assert len({(i, j) for _, i, j, _ in first}) == 60  # no repeats
    again = get_dataset("megadepth")(conf).get_dataset("train")
    assert again.items == first  # deterministic in the seed
    split.sample_new_items(1)
    assert split.items != first and len(split.items) == 60
    split.sample_new_items(0)
    assert split.items == first


def test_sample_pairs_skips_thin_bins():
    ov = np.zeros((40, 40))
    iu = np.triu_indices(40, 1)
    vals = np.where(np.arange(len(iu[0])) < 10, 0.2, 0.8)  # 10 low, the rest high
    ov[iu] = vals
    ov = ov + ov.T
    pairs = sample_pairs(ov, 40, 0.1, 1.0, 2, np.random.RandomState(0))
    assert (
        len(pairs) == 40 and (pairs[:, 2] > 0.5).all()
    )  # the thin bin gave its quota away


def test_shipped_scene_lists():
    assert len(read_scene_list("train_scenes_clean.txt")) == 153
    assert read_scene_list("valid_scenes_clean.txt") == ["0015", "0022"]
    assert read_scene_list("test_scenes_clean.txt") == [
        "0008", "0019", "0021", "0024", "0025", "0032", "0063", "1589"
    ]  # fmt: skip
    train = set(read_scene_list("train_scenes_clean.txt"))
    assert not train & {
        "0015",
        "0022",
        "0008",
        "0019",
        "0021",
        "0024",
        "0025",
        "0032",
        "0063",
        "1589",
    }
    lines = (SCENE_LISTS / "valid_pairs.txt").read_text().splitlines()
    assert len(lines) == 1500
    scenes = [ln.split("/")[0] for ln in lines]
    assert scenes.count("0015") == 600 and scenes.count("0022") == 900


@pytest.mark.slow
def test_builtin_posed_set_as_megadepth(tmp_path):
    """The built-in posed set (Middlebury + rendered planes, real depth) converted to the
    MegaDepth layout: pairs load, and points lifted with the dataset's depth and camera
    and moved by T_0to1 are matched to their projections by the depth ground truth."""
    builtin = pytest.importorskip("gluefactory.datasets.sources.builtin")
    src = builtin.ensure_builtin("posed")  # in the data root: built once, then verified
    dst = tmp_path / "md"
    summary = convert(src, dst, stride=16)
    assert len(summary) >= 2 and all(s["with_depth"] == s["images"] for s in summary)
    conf = {
        "data_dir": str(dst), "train_split": str(dst / "scenes.txt"),
        "train_num_per_scene": 2, "min_overlap": 0.1, "max_overlap": 1.0,
        "val_split": str(dst / "scenes.txt"), "val_pairs": str(dst / "pairs.txt"),
        "preprocessing": {"resize": 320},
    }  # fmt: skip
    ds = get_dataset("megadepth")(conf)
    train, val = ds.get_dataset("train"), ds.get_dataset("val")
    assert len(val) == sum(len(s["pairs"]) for s in summary) > 0
    assert 0 < len(train) <= 2 * len(summary)
    data = collate([val[0]])
    cam0, cam1 = data["view0"]["camera"], data["view1"]["camera"]
    d0 = data["view0"]["depth"][0]
    v, u = torch.nonzero(d0 > 0, as_tuple=True)
    sel = torch.arange(0, len(u), max(1, len(u) // 200))
    k0 = torch.stack([u[sel], v[sel]], -1).float() + 0.5
    X = data["T_0to1"].transform(cam0.unproject(k0[None], d0[v[sel], u[sel]][None]))
    k1, ok = cam1.project(X)
    gt = get_model("matchers.depth_matcher")({})(
        {**data, "keypoints0": k0[None], "keypoints1": k1}
    )
    m0 = gt["gt_matches0"][0]
    idx = torch.arange(len(k0))
    inside = ok[0] & cam1.in_image(k1)[0]
    # projected points with valid depth match themselves (occlusions aside)
    assert ((m0 == idx) | ~inside).float().mean() > 0.8


# ------------------------------------------------------- p_rotate, negatives, triplets
def _disparity_points(motorcycle_pair, step=997):
    """Original-pixel correspondences (N, 2) left -> right from the real disparity,
    with the left depth (m) at each point."""
    disp = motorcycle_pair["disparity"]
    v, u = torch.nonzero(torch.isfinite(disp), as_tuple=True)
    v, u = v[::step], u[::step]
    d = disp[v, u].double()
    p0 = torch.stack([u + 0.5, v + 0.5], -1).double()
    p1 = torch.stack([u + 0.5 - d, v + 0.5], -1)
    return p0, p1, v, u


def _turn(p, rot, w, h):
    """Original pixels of a (w, h) image -> pixels of the image turned by ``rot``."""
    A = torch.from_numpy(megadepth.quarter_turn(rot, w, h)).to(p)
    return p @ A[:2, :2].T + A[:2, 2]


def _seed_with(split, rots):
    """A seed whose rotation draws for item 0 are ``rots`` (one per view)."""
    for seed in range(200):
        split.sample_new_items(seed)
        if [split.rotation(0, v) for v in range(len(rots))] == list(rots):
            return seed
    raise AssertionError(f"no seed draws {rots}")


def test_quarter_turn_matches_rot90_and_keeps_projections_exact():
    g = torch.Generator().manual_seed(0)
    w, h = 7, 4
    img = torch.rand(1, h, w, generator=g)
    K = np.array([[50.0, 0, 3.2], [0, 55.0, 2.1], [0, 0, 1]])
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    T[:3, 3] = [0.3, -0.1, 0.5]
    X = np.random.default_rng(0).uniform(-1, 1, (50, 3)) + [0, 0, 4]
    for rot in (1, -1):
        A = megadepth.quarter_turn(rot, w, h)
        turned = torch.rot90(img, rot, (-2, -1))
        assert turned.shape[-2:] == (w, h)
        for i, j in [(0, 0), (1, 5), (3, 6), (2, 2)]:  # pixel centres follow A
            x, y = (A @ [j + 0.5, i + 0.5, 1])[:2] - 0.5
            assert turned[0, int(y), int(x)] == img[0, i, j]
        R = np.eye(4)
        R[:2, :2] = A[:2, :2]
        K2, T2 = A @ K @ R[:3, :3].T, R @ T
        assert K2[0, 1] == K2[1, 0] == 0 and K2[2].tolist() == [0, 0, 1]
        cam = lambda Kx, Tx: (Kx @ (Tx[:3, :3] @ X.T + Tx[:3, 3:])).T  # noqa: E731
        p, p2 = cam(K, T), cam(K2, T2)
        p, p2 = p[:, :2] / p[:, 2:], p2[:, :2] / p2[:, 2:]
        np.testing.assert_allclose(p2, p @ A[:2, :2].T + A[:2, 2], atol=1e-9)


@pytest.mark.parametrize("rots", [(1, -1), (-1, 1)])
def test_rotated_pair_depth_gt_is_exact(md_tree, motorcycle_pair, rots):
    """Both views turned (one each way): the disparity correspondences, moved into the
    turned images, are still related exactly by the turned cameras, depth and T_0to1,
    and the depth matcher finds them."""
    dst = md_tree["dst"]
    upright = get_dataset("megadepth")(_conf(dst)).get_dataset("train")[0]
    split = get_dataset("megadepth")(_conf(dst, p_rotate=1.0)).get_dataset("train")
    _seed_with(split, rots)
    data = split[0]
    w, h = 741, 500
    for v, rot in enumerate(rots):
        view, up = data[f"view{v}"], upright[f"view{v}"]
        assert view["image_size"].tolist() == [345, 512]
        assert view["original_image_size"].tolist() == [500, 741]
        torch.testing.assert_close(view["camera"].size, view["image_size"])
        # turn-then-resize equals resize-then-turn (separable antialiased resize)
        turned = torch.rot90(up["image"][:, :345, :512], rot, (-2, -1))
        torch.testing.assert_close(
            view["image"][:, :512, :345], turned, atol=1e-5, rtol=0
        )
        assert view["image"][:, :, 345:].abs().max() == 0  # padded bottom/right
        assert view["depth"].shape == (512, 512) and view["depth"][:, 345:].max() == 0
    p0, p1, v, u = _disparity_points(motorcycle_pair)
    s0, s1 = data["view0"]["scales"].double(), data["view1"]["scales"].double()
    k0, k1 = _turn(p0, rots[0], w, h) * s0, _turn(p1, rots[1], w, h) * s1
    z = torch.from_numpy(md_tree["depth0"]).double()[v, u]
    cam0, cam1 = data["view0"]["camera"].double(), data["view1"]["camera"].double()
    proj, ok = cam1.project(data["T_0to1"].double().transform(cam0.unproject(k0, z)))
    assert ok.all() and (proj - k1).abs().max() < 1e-3
    # the depth matcher on the turned item (turned depth maps) finds the true partners
    g = torch.Generator().manual_seed(0)
    sel = torch.randperm(len(k0), generator=g)[:300]
    k0, k1 = k0[sel].float(), k1[sel].float()
    k1 = k1 + 0.3 * torch.randn(k1.shape, generator=g)
    perm = torch.randperm(len(k0), generator=g)
    gt = get_model("matchers.depth_matcher")({})(
        {**collate([data]), "keypoints0": k0[None], "keypoints1": k1[perm][None]}
    )
    m0 = gt["gt_matches0"][0]
    pos = m0 >= 0
    assert pos.float().mean() > 0.8
    assert (m0[pos] == torch.argsort(perm)[pos]).all()


def test_rotation_draw_is_deterministic_and_train_only(md_tree):
    dst = md_tree["dst"]
    a = get_dataset("megadepth")(_conf(dst, p_rotate=0.5)).get_dataset("train")
    b = get_dataset("megadepth")(_conf(dst, p_rotate=0.5)).get_dataset("train")
    draws = [a.rotation(k, v) for k in range(1000) for v in range(2)]
    assert draws == [b.rotation(k, v) for k in range(1000) for v in range(2)]
    counts = {r: draws.count(r) for r in (-1, 0, 1)}
    assert 900 < counts[0] < 1100 and 400 < counts[1] < 600 and 400 < counts[-1] < 600
    seed = _seed_with(a, (1, -1))
    b.sample_new_items(seed)
    x, y = a[0], b[0]
    for v in ("view0", "view1"):
        assert torch.equal(x[v]["image"], y[v]["image"])
        assert torch.equal(x[v]["camera"]._data, y[v]["camera"]._data)
    a.sample_new_items(seed + 1)  # a new epoch: new draws; back: the same again
    assert [a.rotation(k) for k in range(50)] != [b.rotation(k) for k in range(50)]
    a.sample_new_items(seed)
    assert [a.rotation(k) for k in range(50)] == [b.rotation(k) for k in range(50)]
    val = get_dataset("megadepth")(
        _conf(dst, p_rotate=1.0, val_pairs=str(dst / "pairs.txt"))
    ).get_dataset("val")
    assert {val.rotation(k, v) for k in range(100) for v in range(2)} == {0}
    assert val[0]["view0"]["image_size"].tolist() == [512, 345]  # not turned
    none = get_dataset("megadepth")(_conf(dst)).get_dataset("train")  # p_rotate 0
    assert {none.rotation(k, v) for k in range(100) for v in range(2)} == {0}


def _write_cache(path, names, kpts, sizes):
    g = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for name, k, size in zip(names, kpts, sizes):
            grp = f.create_group(name)
            n = len(k)
            grp["keypoints"] = k.astype(np.float32)
            grp["keypoint_scores"] = np.linspace(1, 0.5, n).astype(np.float16)
            grp["descriptors"] = g.standard_normal((n, 8)).astype(np.float16)
            grp["oris"] = g.uniform(-np.pi, np.pi, n).astype(np.float32)
            grp["image_size"] = np.array(size, np.float32)
        f.attrs["complete"] = True


def test_rotated_cached_features(md_tree, motorcycle_pair, tmp_path):
    """Cached keypoints (original pixels) are turned with their view, then rescaled;
    oris are turned; the depth GT with them finds the true partners."""
    p0, p1, _, _ = _disparity_points(motorcycle_pair, step=3001)
    w, h = 741, 500
    _write_cache(
        tmp_path / "motorcycle.h5", ["left.png", "right.png"],
        [p0.numpy(), p1.numpy()], [(w, h), (w, h)],
    )  # fmt: skip
    lf = {"do": True, "path": str(tmp_path / "{scene}.h5"), "padding_length": len(p0)}
    dst = md_tree["dst"]
    conf = _conf(dst, p_rotate=1.0, read_image=False, load_features=lf)
    split = get_dataset("megadepth")(conf).get_dataset("train")
    rots = (1, -1)
    _seed_with(split, rots)
    data = split[0]
    upright = get_dataset("megadepth")(_conf(dst, read_image=False, load_features=lf))
    up = upright.get_dataset("train")[0]
    for v, (rot, p) in enumerate(zip(rots, (p0, p1))):
        view, cache = data[f"view{v}"], data[f"view{v}"]["cache"]
        assert view["image_size"].tolist() == [345, 512] and "image" not in view
        expected = _turn(p, rot, w, h) * view["scales"].double()
        torch.testing.assert_close(
            cache["keypoints"].double(), expected, atol=1e-3, rtol=0
        )
        assert cache["keypoint_mask"].all()
        o, o_up = cache["oris"].double(), up[f"view{v}"]["cache"]["oris"].double()
        diff = torch.remainder(o - o_up + rot * np.pi / 2 + np.pi, 2 * np.pi) - np.pi
        assert diff.abs().max() < 1e-5 and (o >= -np.pi).all() and (o < np.pi).all()
        torch.testing.assert_close(
            cache["descriptors"], up[f"view{v}"]["cache"]["descriptors"]
        )
    b = collate([data])
    gt = get_model("matchers.depth_matcher")({})(
        {**b, "keypoints0": b["view0"]["cache"]["keypoints"],
         "keypoints1": b["view1"]["cache"]["keypoints"]}
    )  # fmt: skip
    m0 = gt["gt_matches0"][0]
    pos = m0 >= 0
    assert pos.float().mean() > 0.8 and (m0[pos] == torch.arange(len(m0))[pos]).all()


def _fake_negatives(root, n=30, frac=0.3, seed=0):
    """_fake_scene with a share ``frac`` of the pairs at overlap 0 or -1 (no overlap)."""
    ov = _fake_scene(root, n, seed)
    rng = np.random.default_rng(seed + 1)
    neg = np.triu(rng.uniform(0, 1, (n, n)) < frac, 1)
    ov[neg] = rng.choice([0.0, -1.0], int(neg.sum()))
    ov[neg.T] = ov.T[neg.T]
    info = dict(np.load(root / "scene_info" / "s.npz", allow_pickle=True))
    np.savez(root / "scene_info" / "s.npz", **{**info, "overlap_matrix": ov})
    return ov


def test_negative_pairs_are_counted_and_have_no_overlap(tmp_path):
    ov = _fake_negatives(tmp_path)
    base = {
        "data_dir": str(tmp_path), "train_split": ["s"], "min_overlap": 0.1,
        "max_overlap": 0.7, "num_overlap_bins": 3,
    }  # fmt: skip
    ds = lambda num: get_dataset("megadepth")(  # noqa: E731
        {**base, "train_num_per_scene": num}
    ).get_dataset("train")
    items = ds([30, 7]).items
    o = np.array([it[3] for it in items])
    assert len(items) == 37 and (o <= 0).sum() == 7
    assert ((o > 0.1) & (o <= 0.7)).sum() == 30
    assert len({it[1:3] for it in items}) == 37 and all(i < j for _, i, j, _ in items)
    for _, i, j, oij in items:
        assert oij == min(ov[i, j], ov[j, i]) and i % 10 and j % 10
    # the positives are those drawn without negatives; null counts: all / none
    pos = sorted(it for it in items if it[3] > 0)
    assert pos == sorted(ds(30).items) == sorted(ds([30, None]).items)
    valid = [i for i in range(30) if i % 10]
    sym = np.minimum(ov, ov.T)[np.ix_(valid, valid)]
    n_neg = int((sym[np.triu_indices(len(valid), 1)] <= 0).sum())
    everything = ds([None, 10**6]).items
    assert sum(it[3] <= 0 for it in everything) == n_neg
    assert sum(it[3] > 0 for it in everything) == len(ds(None).items)
    split = ds([30, 7])
    split.sample_new_items(1)
    assert sum(it[3] <= 0 for it in split.items) == 7 and split.items != items


def _tiny_tree(root, poses, overlap, size=(40, 30), depth=4.0):
    """A scene "t" of len(poses) small real images, constant depth, K with f = 40."""
    w, h = size
    for sub in ("Undistorted_SfM/t/images", "depth_undistorted/t", "scene_info"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(len(poses)):
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        cv2.imwrite(str(root / f"Undistorted_SfM/t/images/{i}.png"), img)
        with h5py.File(root / f"depth_undistorted/t/{i}.h5", "w") as f:
            f.create_dataset("depth", data=np.full((h, w), depth, np.float32))
        names.append(f"Undistorted_SfM/t/images/{i}.png")
    K = np.array([[40.0, 0, w / 2], [0, 40.0, h / 2], [0, 0, 1]])
    np.savez(
        root / "scene_info" / "t.npz", image_paths=np.array(names, dtype=object),
        depth_paths=np.array([f"d/{i}.h5" for i in range(len(poses))], dtype=object),
        intrinsics=np.tile(K, (len(poses), 1, 1)), poses=np.stack(poses),
        overlap_matrix=np.asarray(overlap, float),
    )  # fmt: skip


def _pose(aa, t):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = cv2.Rodrigues(np.asarray(aa, float))[0], t
    return T


def test_negative_pair_depth_gt_is_all_unmatched(tmp_path):
    far = _pose([0, 0, 0], [-100.0, 0, 0])  # 100 m to the side: nothing in common
    _tiny_tree(tmp_path, [np.eye(4), far], [[1, 0], [-1, 1]])
    conf = {
        "data_dir": str(tmp_path), "train_split": ["t"], "train_num_per_scene": [5, 5],
        "preprocessing": {"resize": 40},
    }  # fmt: skip
    split = get_dataset("megadepth")(conf).get_dataset("train")
    assert [it[1:] for it in split.items] == [(0, 1, -1.0)]
    data = collate([split[0]])
    assert data["overlap_0to1"].tolist() == [-1.0]
    g = torch.Generator().manual_seed(0)
    kp = torch.rand(1, 50, 2, generator=g) * torch.tensor([40.0, 30.0])
    gt = get_model("matchers.depth_matcher")({})(
        {**data, "keypoints0": kp, "keypoints1": kp.flip(1)}
    )
    assert (gt["gt_matches0"] == -1).all() and (gt["gt_matches1"] == -1).all()
    assert not gt["gt_assignment"].any()


def test_triplet_sampling(tmp_path):
    ov = _fake_scene(tmp_path)
    sym = np.minimum(ov, ov.T)
    base = {
        "data_dir": str(tmp_path), "train_split": ["s"], "views": 3,
        "min_overlap": 0.3, "max_overlap": 0.9,
    }  # fmt: skip
    valid = [i for i in range(30) if i % 10]
    good = (sym > 0.3) & (sym <= 0.9)
    np.fill_diagonal(good, False)
    for enforce in (False, True):
        conf = {**base, "train_num_per_scene": 40, "triplet_enforce_overlap": enforce}
        split = get_dataset("megadepth")(conf).get_dataset("train")
        assert len(split.items) == 40
        for _, a, b, c, o01, o02, o12 in split.items:
            assert len({a, b, c}) == 3 and all(x in valid for x in (a, b, c))
            assert good[a, b] and good[a, c] and (good[b, c] or not enforce)
            assert (o01, o02, o12) == (sym[a, b], sym[a, c], sym[b, c])
        again = get_dataset("megadepth")(conf).get_dataset("train")
        assert again.items == split.items
        split.sample_new_items(1)
        assert split.items != again.items
    # all triangles, each once (in some order of its views)
    g = good[np.ix_(valid, valid)]
    brute = {
        frozenset((valid[i], valid[j], valid[k]))
        for i in range(len(valid)) for j in range(i + 1, len(valid))
        for k in range(j + 1, len(valid)) if g[i, j] and g[i, k] and g[j, k]
    }  # fmt: skip
    tri = megadepth.sample_triplets(ov[np.ix_(valid, valid)], None, 0.3, 0.9, True,
                                    np.random.RandomState(0))  # fmt: skip
    got = [frozenset(valid[x] for x in t) for t in tri]
    assert len(got) == len(set(got)) == len(brute) and set(got) == brute
    loose = megadepth.sample_triplets(ov[np.ix_(valid, valid)], None, 0.3, 0.9, False,
                                      np.random.RandomState(0))  # fmt: skip
    assert len(loose) == int(g[g.sum(1) >= 2].sum())  # every (anchor, partner) once


def test_triplet_poses_compose(tmp_path):
    poses = [
        _pose([0, 0, 0], [0, 0, 0]),
        _pose([0.02, -0.1, 0.03], [0.3, 0.01, 0.02]),
        _pose([-0.05, 0.1, -0.02], [-0.25, 0.02, 0.05]),
    ]
    _tiny_tree(tmp_path, poses, np.full((3, 3), 0.8))
    (tmp_path / "triplets.txt").write_text(
        "t/images/2.png t/images/0.png t/images/1.png\n"
    )
    conf = {
        "data_dir": str(tmp_path), "train_split": ["t"], "val_split": ["t"],
        "views": 3, "train_num_per_scene": None, "p_rotate": 0.7,
        "val_pairs": str(tmp_path / "triplets.txt"), "preprocessing": {"resize": 40},
    }  # fmt: skip
    ds = get_dataset("megadepth")(conf)
    train, val = ds.get_dataset("train"), ds.get_dataset("val")
    assert len(train) == 6  # each (anchor, partner) once: 3 x 2
    assert [it[1:4] for it in val.items] == [(2, 0, 1)]
    rots = {train.rotation(k, v) for k in range(len(train)) for v in range(3)}
    assert rots == {-1, 0, 1}  # turned views compose too
    for data in [train[k] for k in range(len(train))] + [val[0]]:
        assert {"view0", "view1", "view2"} <= set(data)

        def T(a, b, data=data):
            return data[f"T_{a}to{b}"].matrix().double()

        for a, b in [(0, 1), (0, 2), (1, 2)]:
            w2c = [data[f"view{x}"]["T_w2cam"].matrix().double() for x in (a, b)]
            torch.testing.assert_close(T(a, b), w2c[1] @ torch.linalg.inv(w2c[0]))
            torch.testing.assert_close(T(b, a), torch.linalg.inv(T(a, b)))
            assert data[f"overlap_{a}to{b}"] == pytest.approx(0.8)
        torch.testing.assert_close(T(0, 2), T(1, 2) @ T(0, 1), atol=1e-6, rtol=0)
        torch.testing.assert_close(T(2, 0), T(1, 0) @ T(2, 1), atol=1e-6, rtol=0)
    assert val[0]["name"] == "t/2_0_1"


def test_single_views_draw_num_per_scene_images(tmp_path):
    """views 1 (as upstream): <split>_num_per_scene images of each scene, redrawn each
    epoch; null: all of them (what the feature exporter uses)."""
    _fake_scene(tmp_path)
    valid = [i for i in range(30) if i % 10]
    conf = {"data_dir": str(tmp_path), "train_split": ["s"], "views": 1}
    split = get_dataset("megadepth")({**conf, "train_num_per_scene": 5}).get_dataset(
        "train"
    )
    first = list(split.items)
    assert len(first) == 5 and all(s == "s" and i in valid for s, i in first)
    split.sample_new_items(1)
    assert len(split.items) == 5 and split.items != first
    split.sample_new_items(0)
    assert split.items == first
    every = get_dataset("megadepth")({**conf, "train_num_per_scene": None})
    assert [i for _, i in every.get_dataset("train").items] == valid


def test_upstream_reseed_key_is_accepted_and_changes_nothing(md_tree):
    conf = _conf(md_tree["dst"], p_rotate=0.5)
    a = get_dataset("megadepth")(conf).get_dataset("train")
    b = get_dataset("megadepth")({**conf, "reseed": True}).get_dataset("train")
    assert a.items == b.items
    assert torch.equal(a[0]["view0"]["image"], b[0]["view0"]["image"])


def test_new_keys_bad_values_are_config_errors(tmp_path):
    _fake_scene(tmp_path)
    base = {"data_dir": str(tmp_path), "train_split": ["s"]}
    md = get_dataset("megadepth")
    for kw, key in [
        ({"p_rotate": 1.5}, "p_rotate"), ({"p_rotate": -0.1}, "p_rotate"),
        ({"p_rotate": "often"}, "p_rotate"), ({"p_rotate": True}, "p_rotate"),
        ({"views": 4}, "views"), ({"views": 0}, "views"),
        ({"views": 3, "num_overlap_bins": 3}, "num_overlap_bins"),
        ({"triplet_enforce_overlap": "yes"}, "triplet_enforce_overlap"),
        ({"train_num_per_scene": [10, 5, 1]}, "train_num_per_scene"),
        ({"train_num_per_scene": [10, -5]}, "train_num_per_scene"),
        ({"train_num_per_scene": -3}, "train_num_per_scene"),
        ({"val_num_per_scene": "many"}, "val_num_per_scene"),
        ({"views": 3, "train_num_per_scene": [10, 5]}, "train_num_per_scene.*views: 3"),
        ({"views": 1, "test_num_per_scene": [10, 5]}, "test_num_per_scene.*views: 1"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError, match=key):
            md({**base, **kw})
    # upstream's keys and defaults are accepted
    ok = md({**base, "p_rotate": 0.0, "triplet_enforce_overlap": False,
             "train_num_per_scene": [10, 5]})  # fmt: skip
    assert ok.conf.p_rotate == 0.0 and len(ok.get_dataset("train")) > 0
