"""image_folder: folder, glob, list file and list inputs; preprocessing and scales."""

from __future__ import annotations

import cv2
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.tensor import collate


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("imgs")
    (root / "sub").mkdir()
    cv2.imwrite(str(root / "coffee.png"), skd.coffee()[..., ::-1])  # 600 x 400
    cv2.imwrite(str(root / "sub" / "rocket.jpg"), skd.rocket()[..., ::-1])  # 640 x 427
    (root / "readme.txt").write_text("sub/rocket.jpg\n# comment\ncoffee.png\n")
    return root


def test_folder_recursive_sorted(folder):
    ds = get_dataset("image_folder")({"images": str(folder)})
    split = ds.get_dataset("test")
    assert split.names == ["coffee.png", "sub/rocket.jpg"]
    item = split[0]
    assert item["name"] == "coffee.png"
    assert item["image"].shape == (3, 400, 600)
    assert item["scales"].tolist() == [1, 1]
    assert item["original_image_size"].tolist() == [600, 400]


def test_glob_list_file_and_list(folder):
    ds = get_dataset("image_folder")({"images": str(folder / "**" / "*.jpg")})
    assert ds.names == ["rocket.jpg"]
    ds = get_dataset("image_folder")({"images": str(folder / "readme.txt")})
    assert ds.names == ["sub/rocket.jpg", "coffee.png"]  # list order kept
    ds = get_dataset("image_folder")({"images": [str(folder / "coffee.png")]})
    assert len(ds.get_dataset("train")) == 1


def test_preprocessing_and_scales(folder):
    conf = {
        "images": str(folder),
        "preprocessing": {"resize": 300, "side": "long", "grayscale": True},
    }
    split = get_dataset("image_folder")(conf).get_dataset("train")
    item = split[1]
    assert item["image"].shape == (1, 200, 300)
    assert item["image_size"].tolist() == [300, 200]
    torch.testing.assert_close(item["scales"], torch.tensor([300 / 640, 200 / 427]))
    conf["preprocessing"]["resize"] = [240, 320]
    batch = collate(
        [get_dataset("image_folder")(conf).get_dataset("train")[i] for i in (0, 1)]
    )
    assert batch["image"].shape == (2, 1, 240, 320) and batch["name"] == [
        "coffee.png",
        "sub/rocket.jpg",
    ]


def test_relative_to_data_root(folder, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(folder))
    assert get_dataset("image_folder")({"images": "sub"}).names == ["rocket.jpg"]


def test_errors(folder, tmp_path):
    with pytest.raises(ConfigError, match="set `images`"):
        get_dataset("image_folder")({})
    with pytest.raises(DataError, match="does not exist"):
        get_dataset("image_folder")({"images": str(tmp_path / "nope")})
    with pytest.raises(DataError, match="no images in folder"):
        get_dataset("image_folder")({"images": str(tmp_path)})
    (tmp_path / "list.txt").write_text("a.png\nb.png\n")
    with pytest.raises(DataError, match="not found: .*a.png"):
        get_dataset("image_folder")({"images": str(tmp_path / "list.txt")})
    with pytest.raises(ConfigError, match="resize"):
        get_dataset("image_folder")(
            {"images": str(folder), "preprocessing": {"rezise": 3}}
        )
