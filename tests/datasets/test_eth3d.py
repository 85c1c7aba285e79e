"""The ``eth3d`` dataset on a tiny scene in the real layout: pairs by covisibility,
images downsized by the factor, cameras scaled to them, low-resolution depth resized."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.formats import eth3d
from gluefactory.utils.errors import ConfigError


def _tiny():
    spec = importlib.util.spec_from_file_location(
        "eth3d_tiny", Path(__file__).with_name("eth3d_tiny.py")
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tiny = _tiny()
W, H, write_tiny_scene = tiny.W, tiny.H, tiny.write_tiny_scene


def test_pairs_images_cameras_and_depth(tmp_path):
    write_tiny_scene(tmp_path)
    conf = {"root": str(tmp_path), "downsize_factor": 4, "min_covisibility": 2}
    ds = get_dataset("eth3d")(conf)
    assert ds.items == [
        ("courtyard", "A.JPG", "B.JPG"),
        ("courtyard", "B.JPG", "C.JPG"),
    ]
    item = ds[0]
    v0 = item["view0"]
    assert tuple(v0["image"].shape[-2:]) == (H // 4, W // 4)  # long side 96 // 4
    np.testing.assert_allclose(v0["camera"].f.numpy(), [20.0, 20.0], rtol=1e-6)
    np.testing.assert_allclose(v0["camera"].c.numpy(), [12.0, 8.0], rtol=1e-6)
    assert torch.all(v0["depth"] == 2.0) and item["view1"]["depth"].shape == (16, 24)
    assert float(item["T_0to1"].t[0]) == pytest.approx(0.5)  # t1 - R t0
    root, files = ds.source_files()
    assert root / "courtyard" / eth3d.CALIBRATION / eth3d.IMAGES_TXT in files
    assert len(files) == 2 + 2 * 3  # calibration + images and depths
    # factor 1: the images as stored, the depth upsampled (nearest) to them
    full = get_dataset("eth3d")({**conf, "downsize_factor": 1})[1]
    assert full["view1"]["depth"].shape == (H, W)
    assert torch.all(full["view1"]["depth"] == 4.0)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"downsize_factor": 0}, "downsize_factor must be an integer >= 1"),
        ({"preprocessing": {"resize": 100}}, "set data.downsize_factor"),
        ({"depth_format": "h5"}, "depth maps are PNG"),
    ],
)
def test_config_errors(tmp_path, override, match):
    write_tiny_scene(tmp_path)
    with pytest.raises(ConfigError, match=match):
        get_dataset("eth3d")({"root": str(tmp_path), **override})
