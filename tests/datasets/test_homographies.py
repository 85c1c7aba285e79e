"""The homographies dataset: contract, pixel-exact ground truth, splits, determinism."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.geometry.homography import warp_image, warp_points
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.tensor import collate


def _folder_conf(path, **kw):
    conf = {
        "data_dir": str(path),
        "image_dir": "",
        "image_list": None,
        "train_size": None,
        "val_size": 1,
        "photometric": {"name": "identity"},
        "homography": {"difficulty": 0.7, "max_angle": 45},
    }
    conf.update(kw)
    return conf


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Four real photographs from scikit-image, as files."""
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("photos")
    for name in ("coffee", "astronaut", "rocket", "chelsea"):
        cv2.imwrite(str(root / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    return root


BLOBS = np.array([[123.3, 101.7], [400.6, 87.2], [250.1, 270.9], [87.8, 330.4]])


@pytest.fixture(scope="module")
def blob_dir(tmp_path_factory):
    """A 600 x 400 image of Gaussian blobs centred at sub-pixel positions (+0.5 convention)."""
    root = tmp_path_factory.mktemp("blobs")
    ys, xs = np.mgrid[0:400, 0:600] + 0.5  # pixel centres
    img = np.zeros((400, 600))
    for x, y in BLOBS:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.0**2))
    img = (255 * img / img.max()).astype(np.uint8)
    cv2.imwrite(str(root / "blobs.png"), np.repeat(img[..., None], 3, -1))
    cv2.imwrite(str(root / "blobs2.png"), np.repeat(img[..., None], 3, -1))
    return root


def _centroid(image: torch.Tensor, near: torch.Tensor, r: int = 9) -> torch.Tensor:
    """Intensity centroid (+0.5 convention) of the blob within r px of ``near``."""
    g = image[0].double()
    h, w = g.shape
    x0, y0 = int(near[0]), int(near[1])
    ys, xs = torch.meshgrid(
        torch.arange(max(0, y0 - r), min(h, y0 + r + 1)),
        torch.arange(max(0, x0 - r), min(w, x0 + r + 1)),
        indexing="ij",
    )
    v = g[ys, xs]
    v = (v - 0.05).clamp(min=0)
    return torch.stack([(v * (xs + 0.5)).sum(), (v * (ys + 0.5)).sum()]) / v.sum()


def test_item_contract(photo_dir):
    ds = get_dataset("homographies")(_folder_conf(photo_dir))
    data = ds.get_dataset("train")[0]
    assert {"name", "scene", "view0", "view1", "H_0to1"} <= set(data)
    for i in (0, 1):
        v = data[f"view{i}"]
        assert v["image"].shape == (3, 480, 640) and v["image"].dtype == torch.float32
        assert 0 <= v["image"].min() and v["image"].max() <= 1
        assert v["image_size"].tolist() == [640, 480]
        assert v["scales"].tolist() == [1, 1]
        assert v["original_image_size"].tolist() == [640, 480]
    assert data["H_0to1"].shape == (3, 3)
    batch = collate([ds.get_dataset("train")[i] for i in range(2)])
    assert batch["view1"]["image"].shape == (2, 3, 480, 640)


def test_h_0to1_maps_scene_points_pixel_exactly(blob_dir):
    """Blob centres found in view0, mapped by H_0to1, land on the same blobs in view1."""
    conf = _folder_conf(blob_dir, homography={"difficulty": 0.5, "max_angle": 30})
    split = get_dataset("homographies")(conf).get_dataset("train")
    for epoch in range(3):
        split.set_epoch(epoch)
        data = split[0]
        src = torch.from_numpy(BLOBS)
        for i in (0, 1):  # H_source maps source pixels onto the view
            v = data[f"view{i}"]
            s = v["source_image_size"]
            assert s.tolist() == [600, 400]
            pred = warp_points(src, v["H_source"].double())
            for p in pred:
                if (p > 10).all() and (p < torch.tensor([630, 470])).all():
                    c = _centroid(v["image"], p)
                    assert torch.dist(c, p) < 0.06, (epoch, i, c, p)
        p0 = warp_points(src, data["view0"]["H_source"].double())
        p1 = warp_points(p0, data["H_0to1"].double())
        for a, b in zip(p0, p1):
            inside = lambda p: (p > 10).all() and (p < torch.tensor([630, 470])).all()
            if inside(a) and inside(b):
                c0 = _centroid(data["view0"]["image"], a)
                c1 = _centroid(data["view1"]["image"], b)
                mapped = warp_points(c0[None], data["H_0to1"].double())[0]
                assert torch.dist(mapped, c1) < 0.1, (epoch, mapped, c1)


def test_h_0to1_aligns_real_photographs(photo_dir):
    """Warping view1 back by H_0to1 reproduces view0 better than with a 0.5 px
    convention slip either way (T^-1 H T or T H T^-1)."""
    split = get_dataset("homographies")(_folder_conf(photo_dir)).get_dataset("train")
    T = torch.tensor([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    Ti = torch.linalg.inv(T)
    for idx in range(len(split)):
        data = split[idx]
        H = data["H_0to1"]
        v0, v1 = data["view0"]["image"], data["view1"]["image"]
        errs = []
        for cand in (H, Ti @ H @ T, T @ H @ Ti):
            back, valid = warp_image(v1, torch.linalg.inv(cand), return_mask=True)
            valid[:2], valid[-2:], valid[:, :2], valid[:, -2:] = (
                False,
                False,
                False,
                False,
            )
            errs.append(float((back - v0).abs().mean(0)[valid].mean()))
        assert errs[0] < 0.03 and errs[0] < 0.8 * min(errs[1:]), (idx, errs)


def test_deterministic_in_seed_epoch_and_index(photo_dir):
    conf = _folder_conf(photo_dir, val_size=1, photometric={"name": "lg", "p": 1.0})
    pytest.importorskip("kornia")
    ds = get_dataset("homographies")(conf)
    train, val = ds.get_dataset("train"), ds.get_dataset("val")
    a, b = train[1], train[1]
    assert torch.equal(a["view0"]["image"], b["view0"]["image"])
    assert torch.equal(a["H_0to1"], b["H_0to1"])
    other = get_dataset("homographies")(conf).get_dataset("train")[
        1
    ]  # new process-like
    assert torch.equal(a["view1"]["image"], other["view1"]["image"])
    assert not torch.equal(a["H_0to1"], train[2]["H_0to1"])
    v = val[0]["H_0to1"]
    train.set_epoch(3)
    val.set_epoch(3)
    assert not torch.allclose(train[1]["H_0to1"], a["H_0to1"])
    assert torch.equal(val[0]["H_0to1"], v)  # validation never changes
    train.sample_new_items(
        int(conf.get("seed", 0)) + 0
    )  # trainer callback: seed + epoch
    assert torch.equal(train[1]["H_0to1"], a["H_0to1"])
    seeded = get_dataset("homographies")({**conf, "seed": 1}).get_dataset("train")
    assert not torch.allclose(seeded[1]["H_0to1"], a["H_0to1"])


def test_loader_workers_match_direct_indexing(photo_dir):
    ds = get_dataset("homographies")(
        _folder_conf(photo_dir, num_workers=1, batch_size=3)
    )
    loader = ds.get_data_loader("train", shuffle=False)
    batch = next(iter(loader))
    split = ds.get_dataset("train")
    for i in range(3):
        assert torch.equal(batch["H_0to1"][i], split[i]["H_0to1"])


def test_split_is_seeded_and_disjoint(photo_dir):
    a = get_dataset("homographies")(_folder_conf(photo_dir, val_size=2))
    b = get_dataset("homographies")(_folder_conf(photo_dir, val_size=2))
    assert a.splits == b.splits
    assert not set(a.splits["train"]) & set(a.splits["val"])
    assert len(a.splits["train"]) == 2 and len(a.splits["val"]) == 2
    seeds = {
        tuple(
            get_dataset("homographies")(
                _folder_conf(photo_dir, val_size=2, shuffle_seed=s)
            ).splits["val"]
        )
        for s in range(6)
    }
    assert len(seeds) > 1
    with pytest.raises(ConfigError, match="do not fit the 4 images"):
        get_dataset("homographies")(_folder_conf(photo_dir, train_size=4, val_size=1))


def test_fixed_validation_images(photo_dir):
    """val_images: exactly those images validate (in order), the rest train."""
    ds = get_dataset("homographies")(
        _folder_conf(photo_dir, val_images=["rocket.png", "coffee.png"], val_size=99)
    )
    assert ds.splits["val"] == ["rocket.png", "coffee.png"]
    assert len(ds.splits["train"]) == 2
    assert not {"rocket.png", "coffee.png"} & set(ds.splits["train"])
    val = ds.get_dataset("val")
    assert {val[i]["scene"] for i in range(len(val))} == {"rocket.png", "coffee.png"}
    with pytest.raises(ConfigError, match=r"val_images: \['nope.png'\] not among"):
        get_dataset("homographies")(_folder_conf(photo_dir, val_images=["nope.png"]))
    with pytest.raises(ConfigError, match="does not fit the 2 images left"):
        get_dataset("homographies")(
            _folder_conf(
                photo_dir, val_images=["rocket.png", "coffee.png"], train_size=3
            )
        )


def test_image_list_file(photo_dir, tmp_path):
    (tmp_path / "list.txt").write_text("# my images\ncoffee.png\nrocket.png\n\n")
    conf = _folder_conf(
        photo_dir, image_list=str(tmp_path / "list.txt"), train_size=1, val_size=1
    )
    ds = get_dataset("homographies")(conf)
    assert sorted(ds.splits["train"] + ds.splits["val"]) == ["coffee.png", "rocket.png"]
    with pytest.raises(DataError, match="Image list file not found.*missing.txt"):
        get_dataset("homographies")({**conf, "image_list": "missing.txt"})
    with pytest.raises(DataError, match="No images in"):
        get_dataset("homographies")(_folder_conf(tmp_path, glob=["*.jpg"]))
    with pytest.raises(DataError, match="Image folder not found"):
        get_dataset("homographies")(_folder_conf(tmp_path / "nope"))


def test_glob_recursive(tmp_path, photo_dir):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for i, sub in enumerate(["a", "a/b", "."]):
        (tmp_path / sub / f"img{i}.png").write_bytes(
            (photo_dir / "coffee.png").read_bytes()
        )
    (tmp_path / "notes.txt").write_text("not an image")
    ds = get_dataset("homographies")(_folder_conf(tmp_path, val_size=0))
    assert sorted(ds.splits["train"]) == ["a/b/img1.png", "a/img0.png", "img2.png"]


def test_triplet_and_right_only(photo_dir):
    conf = _folder_conf(photo_dir, triplet=True, right_only=True)
    data = get_dataset("homographies")(conf).get_dataset("train")[0]
    H01, H02, H12 = data["H_0to1"], data["H_0to2"], data["H_1to2"]
    torch.testing.assert_close(
        H12 @ H01, H02 * (H12 @ H01)[2, 2] / H02[2, 2], atol=1e-3, rtol=1e-3
    )
    # right_only: view0 is the whole source image resized to the patch
    w, h = data["view0"]["source_image_size"].tolist()
    S = torch.diag(torch.tensor([640 / w, 480 / h, 1.0]))
    H0 = data["view0"]["H_source"]
    torch.testing.assert_close(H0 / H0[2, 2], S, atol=1e-4, rtol=1e-4)
    assert data["view2"]["image"].shape == (3, 480, 640)


def test_upstream_reseed_key_is_accepted_and_changes_nothing(photo_dir):
    ds = get_dataset("homographies")
    a = ds(_folder_conf(photo_dir)).get_dataset("train")[1]
    b = ds(_folder_conf(photo_dir, reseed=True)).get_dataset("train")[1]
    assert torch.equal(a["H_0to1"], b["H_0to1"])
    assert torch.equal(a["view1"]["image"], b["view1"]["image"])


def test_unreadable_image(photo_dir, tmp_path):
    for name in ("coffee.png", "rocket.png"):
        (tmp_path / name).write_bytes((photo_dir / name).read_bytes())
    (tmp_path / "broken.png").write_bytes(b"not a png")
    conf = _folder_conf(tmp_path, val_size=0)
    split = get_dataset("homographies")(conf).get_dataset("train")
    bad = split.names.index("broken.png")
    with pytest.raises(DataError, match="broken.png.*skip_unreadable"):
        split[bad]
    split = get_dataset("homographies")({**conf, "skip_unreadable": True}).get_dataset(
        "train"
    )
    assert split[bad]["name"] != "broken.png"


def test_bad_config(photo_dir):
    with pytest.raises(ConfigError, match="unknown key"):
        get_dataset("homographies")(
            _folder_conf(photo_dir, photometric={"name": "identity", "q": 1})
        )
    with pytest.raises(ConfigError, match="Unknown photometric"):
        get_dataset("homographies")(
            _folder_conf(photo_dir, photometric={"name": "fancy"})
        )
    with pytest.raises(ConfigError):
        get_dataset("homographies")(_folder_conf(photo_dir, difficulty=0.5))


def test_builtin_photos(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path))
    ds = get_dataset("homographies")(
        {
            "data_dir": "photos",
            "image_dir": "",
            "image_list": None,
            "train_size": None,
            "val_size": 3,
            "photometric": {"name": "identity"},
        }
    )
    assert len(ds.splits["train"]) + 3 >= 15
    assert (tmp_path / "photos" / "skimage_coffee.png").is_file()


def test_items_per_image(photo_dir):
    conf = _folder_conf(photo_dir, val_size=1, items_per_image=3)
    ds = get_dataset("homographies")(conf)
    val = ds.get_dataset("val")
    assert len(val) == 3 and len(ds.get_dataset("train")) == 9
    items = [val[i] for i in range(3)]
    assert len({it["name"] for it in items}) == 3
    assert {it["name"].split("#")[0] for it in items} == set(ds.splits["val"])
    assert not torch.allclose(items[0]["H_0to1"], items[1]["H_0to1"])
    with pytest.raises(IndexError):
        val[3]
    with pytest.raises(ConfigError, match="items_per_image"):
        get_dataset("homographies")({**conf, "items_per_image": 0})
