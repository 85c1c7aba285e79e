"""MegaDepth dataset and the posed-images -> MegaDepth converter, on the real Middlebury
Motorcycle pair (calibration from tests/conftest.py) and on synthetic scene_info files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.datasets.megadepth import SCENE_LISTS, read_scene_list, sample_pairs
from gluefactory.datasets.megadepth_convert import convert, read_views
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
    builtin = pytest.importorskip("gluefactory.datasets.builtin")
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
