"""hpatches: protocol (pairs, ignore list, 480 short side), H convention, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.datasets import hpatches as hpatches_module
from gluefactory.datasets.hpatches import IGNORED_SCENES
from gluefactory.datasets.sources import builtin_hpatches
from gluefactory.geometry.homography import warp_image, warp_points
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.image import ImageReadError

HPatches = get_dataset("hpatches")
skd = pytest.importorskip("skimage.data")


def _H_cv(k: int) -> np.ndarray:
    """A viewpoint-like homography, OpenCV convention (as the HPatches files)."""
    a = 0.04 * k
    return np.array(
        [
            [np.cos(a) * (1 - 0.02 * k), -np.sin(a), 12.0 * k],
            [np.sin(a), np.cos(a), -6.0 * k],
            [2e-5 * k, -1e-5 * k, 1.0],
        ]
    )


def write_sequence(folder: Path, photo: np.ndarray, geometric: bool = True):
    """1.ppm..6.ppm and H_1_k like HPatches: k = warpPerspective(1, H_1_k)."""
    folder.mkdir(parents=True)
    h, w = photo.shape[:2]
    cv2.imwrite(str(folder / "1.ppm"), photo[..., ::-1])
    for k in range(2, 7):
        H = _H_cv(k) if geometric else np.eye(3)
        img = cv2.warpPerspective(photo, H, (w, h), flags=cv2.INTER_LINEAR)
        if not geometric:
            img = np.clip(img * (1 - 0.1 * k), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{k}.ppm"), img[..., ::-1])
        np.savetxt(folder / f"H_1_{k}", H)  # real files: whitespace-separated 3x3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """v_coffee (600x400, real photo), i_chelsea, and an ignored large-image name."""
    root = tmp_path_factory.mktemp("hp") / "hpatches-sequences-release"
    write_sequence(root / "v_coffee", skd.coffee())
    write_sequence(root / "i_chelsea", skd.chelsea(), geometric=False)
    write_sequence(root / "v_talent", skd.chelsea()[:64, :80])
    return root


def test_pairs_ignore_list_and_subsets(tree):
    ds = HPatches({"data_dir": str(tree)})
    assert "v_talent" in IGNORED_SCENES and len(IGNORED_SCENES) == 8
    assert ds.sequences == ["i_chelsea", "v_coffee"]
    assert len(ds) == 10
    assert [ds[i]["name"] for i in range(5)] == [
        f"i_chelsea/1-{k}" for k in range(2, 7)
    ]
    assert (
        HPatches({"data_dir": str(tree), "ignore_large_images": False}).sequences[-1]
        == "v_talent"
    )
    assert HPatches({"data_dir": str(tree), "subset": "v"}).sequences == ["v_coffee"]
    assert HPatches({"data_dir": str(tree), "subset": "i"}).sequences == ["i_chelsea"]
    item = ds[0]
    assert item["is_illu"] and item["scene"] == "i_chelsea"
    assert item["view0"]["name"] == "i_chelsea/1.ppm"
    assert item["view1"]["name"] == "i_chelsea/2.ppm"


def test_short_side_480_and_scaled_homography(tree):
    """Resize to 480 short side; H' = S1 T(.5) H T(-.5) S0^-1, checked on points."""
    ds = HPatches({"data_dir": str(tree), "subset": "v"})
    item = ds[2]  # v_coffee 1 -> 4
    v0 = item["view0"]
    assert v0["image"].shape == (3, 480, 720)
    torch.testing.assert_close(v0["image_size"], torch.tensor([720.0, 480.0]))
    torch.testing.assert_close(v0["original_image_size"], torch.tensor([600.0, 400.0]))
    torch.testing.assert_close(v0["scales"], torch.tensor([1.2, 1.2]))
    H_cv = torch.from_numpy(_H_cv(4))
    p = torch.rand(100, 2, dtype=torch.float64) * torch.tensor([720.0, 480.0])
    q_orig_cv = warp_points(p / 1.2 - 0.5, H_cv)  # via the file's convention
    expected = (q_orig_cv + 0.5) * 1.2
    torch.testing.assert_close(
        warp_points(p, item["H_0to1"].double()), expected, atol=1e-3, rtol=0
    )
    assert item["H_0to1"].dtype == torch.float32 and item["H_0to1"].shape == (3, 3)


def test_sizes_without_images(tree, monkeypatch):
    """``read_image: false`` (the evaluation's metrics loop): the same items without
    ``image``, sizes from the file headers, no image decoded."""
    from dataset_items import assert_same_but_images

    conf = {"data_dir": str(tree), "preprocessing": {"resize": 300}}
    full = HPatches(conf)
    expected = [full[i] for i in range(len(full))]

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded")

    monkeypatch.setattr(hpatches_module, "read_image", no_decoding)
    sizes = HPatches({**conf, "read_image": False})
    assert HPatches.sizes_without_images
    for i, item in enumerate(expected):
        assert_same_but_images(item, sizes[i], item["name"])


def test_converted_homography_aligns_the_images(tree):
    """Warping view 0 by H_0to1 reproduces view 1; without the +0.5 fix it is worse."""
    ds = HPatches(
        {"data_dir": str(tree), "subset": "v", "preprocessing": {"resize": 240}}
    )
    item = ds[4]
    im0, im1 = item["view0"]["image"], item["view1"]["image"]
    size = (im1.shape[-1], im1.shape[-2])

    def err(H):
        warped, mask = warp_image(im0, H, size=size, return_mask=True)
        return float((warped - im1).abs().mean(0)[mask].mean())

    S = torch.diag(torch.tensor([0.6, 0.6, 1.0])).double()
    naive = (S @ torch.from_numpy(_H_cv(6)) @ torch.linalg.inv(S)).float()
    assert err(item["H_0to1"]) < 0.8 * err(naive)
    assert err(item["H_0to1"]) < 0.03


def test_upstream_config_keys_and_grayscale(tree):
    ds = HPatches(
        {
            "data_dir": str(tree),
            "grayscale": True,
            "subset": "i",
            "ignore_large_images": True,
            "preprocessing": {"resize": 480, "side": "short"},
            "batch_size": 1,
            "num_workers": 0,
        }
    )
    image = ds[0]["view0"]["image"]
    assert image.shape[:2] == (1, 480) and abs(image.shape[2] - 451 * 480 / 300) < 1
    torch.testing.assert_close(ds[0]["H_0to1"], torch.eye(3))
    batch = next(iter(ds.get_data_loader("test")))
    assert batch["H_0to1"].shape == (1, 3, 3) and batch["name"] == ["i_chelsea/1-2"]


def test_config_errors(tree):
    with pytest.raises(ConfigError, match="subset"):
        HPatches({"data_dir": str(tree), "subset": "x"})
    with pytest.raises(ConfigError, match="batch_size must be 1"):
        HPatches({"data_dir": str(tree), "batch_size": 4})
    with pytest.raises(ConfigError, match="Unknown configuration key"):
        HPatches({"data_dir": str(tree), "dataset_dir": "x"})


def test_data_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path))
    monkeypatch.setenv("GLUEFACTORY_OFFLINE", "1")
    # the official folder is fetched on first use: offline, one clear message
    with pytest.raises(DataError) as e:
        HPatches()
    msg = str(e.value)
    assert "huggingface.co/datasets/vbalnt/hpatches" in msg
    assert "hpatches-sequences-release" in msg and "H_1_2" in msg and "1.3 GB" in msg
    with pytest.raises(DataError, match="does not exist"):
        HPatches({"data_dir": "elsewhere"})
    root = tmp_path / "hp"
    write_sequence(root / "v_coffee", skd.coffee()[:100, :120])
    (root / "v_coffee" / "H_1_5").unlink()
    (root / "v_coffee" / "3.ppm").unlink()
    with pytest.raises(
        DataError, match=r"v_coffee is incomplete: missing 3.ppm, H_1_5"
    ):
        HPatches({"data_dir": "hp"})


def test_corrupt_files_are_named(tmp_path):
    root = tmp_path / "hp"
    write_sequence(root / "v_coffee", skd.coffee()[:100, :120])
    (root / "v_coffee" / "H_1_2").write_text("1 0 0\n0 1 0\n")
    (root / "v_coffee" / "3.ppm").write_bytes(b"P6 garbage")
    ds = HPatches({"data_dir": str(root)})
    with pytest.raises(DataError, match=r"H_1_2 must hold 9 numbers"):
        ds[0]
    with pytest.raises(ImageReadError, match=r"3\.ppm"):
        ds[1]


# ------------------------------------------------------ the built-in sequences
@pytest.fixture(scope="module")
def builtin_subset(tmp_path_factory):
    root = tmp_path_factory.mktemp("builtin_hp")
    builtin_hpatches.build(root, 0, only=["v_astronaut", "i_coins"])
    return root


def test_builtin_sequences_follow_the_hpatches_convention(builtin_subset):
    """Files are in OpenCV's convention: the dataset's H aligns the rendered views,
    better than the same H without the conversion or shifted by half a pixel."""
    ds = HPatches({"data_dir": str(builtin_subset), "subset": "v"})
    assert len(ds) == 5
    T = torch.tensor([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
    for k in (0, 2, 4):
        item = ds[k]
        im0, im1 = item["view0"]["image"], item["view1"]["image"]
        assert im0.shape[-2] == 480  # stored at the protocol's size already
        size = (im1.shape[-1], im1.shape[-2])

        def err(H, im0=im0, im1=im1, size=size):
            warped, mask = warp_image(im0, H, size=size, return_mask=True)
            return float((warped - im1).abs().mean(0)[mask].mean())

        good = err(item["H_0to1"])
        assert good < 0.08  # resampling, exposure change (up to 10%) and noise
        assert good < err(T @ item["H_0to1"]) and good < err(item["H_0to1"] @ T)


def test_builtin_illumination_sequences(builtin_subset):
    ds = HPatches({"data_dir": str(builtin_subset), "subset": "i"})
    diffs = []
    for item in ds:
        torch.testing.assert_close(item["H_0to1"], torch.eye(3))
        diffs.append(
            float((item["view0"]["image"] - item["view1"]["image"]).abs().mean())
        )
    assert min(diffs) > 0.02 and diffs[-1] > 0.08  # strong, growing photometric change
    H = np.loadtxt(builtin_subset / "v_astronaut" / "H_1_6")
    assert H.shape == (3, 3) and abs(H[2, 2] - 1) < 1e-12
