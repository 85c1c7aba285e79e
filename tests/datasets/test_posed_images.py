"""posed_images: the text format, its errors, and geometric consistency on real data."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.datasets import posed_images as posed_module
from gluefactory.datasets.sources.builtin_posed import build, room_cameras, room_quads
from gluefactory.datasets.sources.builtin_render import _intersect, _rays
from gluefactory.geometry.depth import project, reproject, sample_depth
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.image import ImageReadError
from gluefactory.utils.tensor import collate

PosedImages = get_dataset("posed_images")
skd = pytest.importorskip("skimage.data")


# ----------------------------------------------------------------- a small tree
def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _line(name, R, t, cam="PINHOLE 64 48 50 50 32 24"):
    vals = " ".join(f"{v:.10g}" for v in [*R.ravel(), *t])
    return f"{name} {vals} {cam}"


def make_tree(root: Path, depth_format="h5", views=None, pairs="a.jpg b.jpg\n"):
    """One scene 's' with two 64x48 crops of a real photo and constant depths."""
    scene = root / "s"
    (scene / "images").mkdir(parents=True)
    (scene / "depths").mkdir()
    photo = skd.astronaut()
    for i, name in enumerate(["a", "b", "c"]):
        crop = photo[100 + 10 * i : 148 + 10 * i, 200:264]
        cv2.imwrite(str(scene / "images" / f"{name}.jpg"), crop[..., ::-1])
        depth = np.full((48, 64), 2.0 + i, np.float32)
        depth[0, 0] = 0  # unknown
        if depth_format == "h5":
            with h5py.File(scene / "depths" / f"{name}.h5", "w") as f:
                f["depth"] = depth
        else:
            cv2.imwrite(
                str(scene / "depths" / f"{name}.png"), (depth * 256).astype(np.uint16)
            )
    if views is None:
        views = "\n".join(
            [
                "# name R t camera",
                _line("a.jpg", np.eye(3), [0, 0, 0]),
                _line("b.jpg", _rot_y(0.1), [0.5, 0, 0]),
                _line(
                    "c.jpg",
                    _rot_y(-0.2),
                    [0, 0.3, 0.1],
                    "SIMPLE_RADIAL 64 48 50 32 24 0",
                ),
            ]
        )
    (scene / "views.txt").write_text(views + "\n")
    (scene / "pairs.txt").write_text(pairs)
    return root


def conf(root, **kw):
    return {"root": str(root), **kw}


def test_source_files_are_every_file_read(tmp_path):
    root = make_tree(tmp_path)
    ds = PosedImages(conf(root))
    src_root, files = ds.source_files()
    assert src_root == root
    names = {p.relative_to(root).as_posix() for p in files}
    assert names == {"s/views.txt", "s/pairs.txt"} | {
        f"s/{d}/{n}.{e}"
        for n in "abc"
        for d, e in (("images", "jpg"), ("depths", "h5"))
    }
    ds = PosedImages(conf(root, depth_dir=None))
    assert not any("depths" in str(p) for p in ds.source_files()[1])


def test_item_contract_and_relative_pose(tmp_path):
    ds = PosedImages(conf(make_tree(tmp_path), preprocessing={"resize": 32}))
    assert len(ds) == 1
    item = ds[0]
    assert item["name"] == "s/a.jpg/b.jpg" and item["scene"] == "s"
    v0, v1 = item["view0"], item["view1"]
    assert v0["image"].shape == (3, 24, 32) and v0["image"].dtype == torch.float32
    assert 0 <= float(v0["image"].min()) and float(v0["image"].max()) <= 1
    torch.testing.assert_close(v0["image_size"], torch.tensor([32.0, 24.0]))
    torch.testing.assert_close(v0["original_image_size"], torch.tensor([64.0, 48.0]))
    torch.testing.assert_close(v0["scales"], torch.tensor([0.5, 0.5]))
    assert v0["name"] == "s/a.jpg"
    # camera scaled with the image: f, c and size halve (exact in the +0.5 convention)
    torch.testing.assert_close(
        v0["camera"]._data, torch.tensor([32.0, 24.0, 25.0, 25.0, 16.0, 12.0])
    )
    # depth resized by nearest neighbour: values kept, unknown stays 0
    assert v0["depth"].shape == (24, 32)
    assert set(torch.unique(v0["depth"]).tolist()) <= {0.0, 2.0}
    assert float(v1["depth"].max()) == 3.0
    # T_0to1 = T1 T0^-1 and T_1to0 is its inverse
    R = torch.from_numpy(_rot_y(0.1)).float()
    torch.testing.assert_close(item["T_0to1"].R, R)
    torch.testing.assert_close(item["T_0to1"].t, torch.tensor([0.5, 0, 0]))
    eye = (item["T_1to0"] @ item["T_0to1"]).matrix()
    torch.testing.assert_close(eye, torch.eye(4), atol=1e-6, rtol=0)
    batch = collate([item, item])  # collates: cameras and poses stack
    assert batch["view0"]["camera"].shape == (2,) and batch["T_0to1"].shape == (2,)


@pytest.mark.parametrize("square_pad", [False, True])
def test_sizes_without_images(tmp_path, monkeypatch, square_pad):
    """``read_image: false``: the same items without ``image`` (cameras, depth resized
    and padded as with the image), no image decoded."""
    from dataset_items import assert_same_but_images

    pre = {"resize": 40, "square_pad": square_pad}
    root = make_tree(tmp_path, pairs="a.jpg b.jpg c.jpg\n")
    full = PosedImages(conf(root, preprocessing=pre))[0]

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(posed_module, "read_image", no_decoding)
    sizes = PosedImages(conf(root, preprocessing=pre, read_image=False))[0]
    assert_same_but_images(full, sizes)
    assert sizes["view2"]["depth"].shape == full["view2"]["image"].shape[-2:]


def test_png_depth_single_views_triplets_scene_list(tmp_path):
    root = make_tree(tmp_path, depth_format="png", pairs="a.jpg b.jpg c.jpg\n")
    (root / "scenes.txt").write_text("s\n")
    ds = PosedImages(conf(root, depth_format="png", scene_list="scenes.txt"))
    item = ds[0]
    assert item["nviews"] == 3 and "view2" in item
    assert float(item["view2"]["depth"].max()) == 4.0  # png / 256
    T02 = item["T_1to2"] @ item["T_0to1"]
    torch.testing.assert_close(T02.matrix(), item["T_0to2"].matrix(), atol=1e-6, rtol=0)
    singles = PosedImages(conf(root, depth_format="png", view_groups=None))
    assert len(singles) == 3 and singles[2]["view0"]["name"] == "s/c.jpg"
    nodepth = PosedImages(conf(root, depth_dir=None, scene_list=["s"]))
    assert "depth" not in nodepth[0]["view0"]


def test_extra_data(tmp_path):
    root = make_tree(tmp_path)
    (root / "s" / "extra.txt").write_text("a.jpg 1 'x'\nb.jpg 2 'y'\n")
    ds = PosedImages(
        conf(root, extra_data="{scene}/extra.txt", extra_keys=["id", "tag"])
    )
    assert ds[0]["view1"]["id"] == 2 and ds[0]["view0"]["tag"] == "x"


@pytest.mark.parametrize(
    "line, message",
    [
        ("a.jpg 1 0 0", r"expected 'name R\(9\) t\(3\)"),
        (_line("a.jpg", np.eye(3) * 2, [0, 0, 0]), "not a rotation"),
        (_line("a.jpg", np.diag([1, 1, -1.0]), [0, 0, 0]), "reflection"),
        (_line("a.jpg", np.eye(3), [0, 0, 0], "FISHEYE 64 48 1 2 3"), "unknown camera"),
        (_line("a.jpg", np.eye(3), [0, 0, 0], "PINHOLE 64 48 50 50 32"), "takes 4"),
        (
            _line("a.jpg", np.eye(3), [0, 0, 0], "OPENCV 64 48 50 50 32 24 0.1 0 0 0"),
            "distortion",
        ),
        (
            _line("a.jpg", np.eye(3), [0, 0, 0], "PINHOLE 64 48 50 x 32 24"),
            "views.txt:1",
        ),
    ],
)
def test_bad_views_file(tmp_path, line, message):
    root = make_tree(tmp_path, views=line, pairs="a.jpg a.jpg\n")
    with pytest.raises(DataError, match=message):
        PosedImages(conf(root))


def test_missing_and_corrupt_files(tmp_path):
    root = make_tree(tmp_path)
    (root / "s" / "pairs.txt").write_text("a.jpg z.jpg\n")
    with pytest.raises(DataError, match=r"pairs.txt:1.*z.jpg"):
        PosedImages(conf(root))
    (root / "s" / "pairs.txt").write_text("a.jpg b.jpg\n")
    (root / "s" / "depths" / "b.h5").unlink()
    with pytest.raises(DataError, match=r"incomplete.*b.h5"):
        PosedImages(conf(root))
    ds = PosedImages(conf(root, depth_dir=None))
    (root / "s" / "images" / "b.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="b.jpg"):
        ds[0]
    with pytest.raises(DataError, match="does not exist"):
        PosedImages(conf(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="data.root"):
        PosedImages({})
    with pytest.raises(ConfigError, match="may only use"):
        PosedImages(conf(root, views="{scene}/{name}.txt"))
    with pytest.raises(ConfigError, match="depth_format"):
        PosedImages(conf(root, depth_format="exr"))


def test_size_mismatches_are_reported(tmp_path):
    root = make_tree(tmp_path)
    with h5py.File(root / "s" / "depths" / "a.h5", "w") as f:
        f["depth"] = np.ones((10, 10), np.float32)
    with pytest.raises(DataError, match="a.h5 is 10x10 but its image is 64x48"):
        PosedImages(conf(root))[0]
    views = _line("a.jpg", np.eye(3), [0, 0, 0], "PINHOLE 640 400 50 50 32 24")
    views += "\n" + _line("b.jpg", np.eye(3), [0.5, 0, 0], "PINHOLE 64 48 50 50 32 24")
    root2 = make_tree(tmp_path / "2", views=views, pairs="a.jpg b.jpg\n")
    with pytest.raises(DataError, match="is 64x48 but its camera.*aspect"):
        PosedImages(conf(root2, depth_dir=None))[0]
    # same aspect ratio: the calibration of a larger copy, scaled to the file
    views = _line("a.jpg", np.eye(3), [0, 0, 0], "PINHOLE 128 96 100 100 64 48")
    views += "\n" + _line("b.jpg", np.eye(3), [0.5, 0, 0], "PINHOLE 64 48 50 50 32 24")
    root3 = make_tree(tmp_path / "3", views=views, pairs="a.jpg b.jpg\n")
    cam = PosedImages(conf(root3, depth_dir=None))[0]["view0"]["camera"]
    torch.testing.assert_close(cam._data, torch.tensor([64.0, 48, 50, 50, 32, 24]))


# ------------------------------------------------- real geometry: built-in scenes
def _colour(img, pts):
    """Bilinear colours (N, 3) of a (3, H, W) image at points (N, 2), +0.5 convention."""
    size = torch.tensor([img.shape[-1], img.shape[-2]])
    grid = (pts / size * 2 - 1).float()
    out = torch.nn.functional.grid_sample(
        img[None], grid[None, None], align_corners=False
    )
    return out[0, :, 0].T


@pytest.fixture(scope="module")
def small_posed(tmp_path_factory):
    """Middlebury + one 3-view room (no supersampling), built like the real set."""
    root = tmp_path_factory.mktemp("posed")
    build(root, 0, rooms=1, views=3, supersample=1)
    return root


def test_rendered_room_depth_and_pose_reproject_exactly(small_posed):
    """Depth + pose through the dataset == the renderer's exact ray/scene hit."""
    ds = PosedImages(conf(small_posed, scene_list=["room_0"]))
    rng = np.random.default_rng([0, 100])  # the room's generator, as in build()
    quads = room_quads(rng)
    cams = room_cameras(rng, 3)
    assert len(ds) >= 2
    for item in ds:
        i0, i1 = (int(item[f"view{k}"]["name"][-5]) for k in (0, 1))
        (R0, t0), (R1, t1) = cams[i0], cams[i1]
        v0, v1 = item["view0"], item["view1"]
        K = v0["camera"].K.double().numpy()
        w, h = 640, 480
        center, dirs = _rays(K, R0, t0, w, h, 0.5, 0.5)
        sel = np.random.default_rng(1).choice(w * h, 2000, replace=False)
        tq, _, _, _ = _intersect(quads, center, dirs[sel])
        X = center + tq[:, None] * dirs[sel]
        x1 = (X @ R1.T + t1) @ K.T
        expected = x1[:, :2] / x1[:, 2:]
        kpts = torch.from_numpy(np.stack([sel % w, sel // w], -1) + 0.5).float()
        proj, vis = project(
            kpts[None],
            v0["depth"][None],
            None,
            item["T_0to1"][None],
            v0["camera"][None],
            v1["camera"][None],
        )
        inside = (expected >= 0).all(1) & (expected[:, 0] < w) & (expected[:, 1] < h)
        assert torch.equal(vis[0], torch.from_numpy(inside & (x1[:, 2] > 0)))
        err = (proj[0].double() - torch.from_numpy(expected)).norm(dim=-1)[vis[0]]
        assert err.median() < 1e-4 and err.max() < 1e-2, err.max()  # float32
        # and the images agree there (photometric check of the whole convention chain)
        occl = project(
            kpts[None],
            v0["depth"][None],
            v1["depth"][None],
            item["T_0to1"][None],
            v0["camera"][None],
            v1["camera"][None],
            occlusion_tol=0.01,
        )[1][0]
        ok = vis[0] & occl
        assert ok.sum() > 300

        c0 = _colour(v0["image"], kpts[ok])
        good = (_colour(v1["image"], proj[0][ok]) - c0).abs().mean()
        shifted = (_colour(v1["image"], proj[0][ok] + 2.0) - c0).abs().mean()
        assert good < 0.6 * shifted, (good, shifted)


def test_middlebury_depth_gives_the_disparity(small_posed):
    ds = PosedImages(conf(small_posed, scene_list=["middlebury_motorcycle"]))
    item = ds[0]
    _, _, disp = skd.stereo_motorcycle()
    v0, v1 = item["view0"], item["view1"]
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, 500, 500), rng.integers(0, 741, 500)
    k = torch.from_numpy(np.stack([xs, ys], -1) + 0.5).float()
    proj, vis = project(
        k[None],
        v0["depth"][None],
        None,
        item["T_0to1"][None],
        v0["camera"][None],
        v1["camera"][None],
    )
    d = torch.from_numpy(disp[ys, xs]).float()
    known = torch.isfinite(d) & (k[:, 0] - d >= 0)
    assert torch.equal(vis[0], known)
    expected = torch.stack([k[:, 0] - d, k[:, 1]], -1)
    torch.testing.assert_close(proj[0][known], expected[known], atol=2e-3, rtol=0)
    # the right depth (splatted from the left) lifts right pixels back consistently
    d1, valid1 = sample_depth(proj[0][known], v1["depth"])
    assert valid1.float().mean() > 0.9
    d0 = v0["depth"][ys[known.numpy()], xs[known.numpy()]]
    assert (d1[valid1] - d0[valid1]).abs().median() < 0.01 * d0.median()


def test_resized_views_keep_the_geometry(small_posed):
    """With a resize, the depth is resampled at pixel centres (nearest) and the scaled
    camera maps view 0 into view 1 as the full-resolution camera does."""
    full = PosedImages(conf(small_posed, scene_list=["room_0"]))[0]
    half = PosedImages(
        conf(small_posed, scene_list=["room_0"], preprocessing={"resize": 320})
    )[0]
    s = half["view0"]["scales"]
    torch.testing.assert_close(s, torch.tensor([0.5, 0.5]))
    # half-res pixel i has its centre at i + 0.5 = full-res 2i + 1: nearest takes 2i + 1
    d_half, d_full = half["view0"]["depth"], full["view0"]["depth"]
    assert torch.equal(d_half, d_full[1::2, 1::2])
    ys, xs = torch.meshgrid(
        torch.arange(0, 240, 7), torch.arange(0, 320, 7), indexing="ij"
    )
    k_half = torch.stack([xs, ys], -1).reshape(1, -1, 2).float() + 0.5
    d = d_half[ys, xs].reshape(1, -1)

    def run(item, k):
        v0, v1 = item["view0"], item["view1"]
        T = item["T_0to1"][None]
        return reproject(k, d, d > 0, T, v0["camera"][None], v1["camera"][None])

    p_half, vis_half = run(half, k_half)
    p_full, vis_full = run(full, k_half / s)
    both = vis_half[0] & vis_full[0]
    assert both.float().mean() > 0.5
    torch.testing.assert_close(p_half[0][both] / s, p_full[0][both], atol=1e-3, rtol=0)
