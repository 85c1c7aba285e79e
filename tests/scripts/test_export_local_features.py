"""``python -m gluefactory.scripts.export_local_features`` over a folder of real
photographs (scikit-image) with XFeat, and the ``homographies`` dataset warping the
cached features into its views."""

from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.datasets import homographies as homographies_module
from gluefactory.geometry.homography import warp_points
from gluefactory.models import get_model
from gluefactory.scripts import export_local_features
from gluefactory.utils.errors import ConfigError, DataError

PHOTOS = ("coffee", "astronaut", "chelsea")
ARGS = [
    "--method", "xfeat", "--images", "photos_small", "model.max_num_keypoints=512",
    "data.preprocessing.resize=320",
]  # fmt: skip
FILE = "exports/photos_small-r320_XFeat-k512.h5"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    skd = pytest.importorskip("skimage.data")
    root = tmp_path_factory.mktemp("data")
    (root / "photos_small").mkdir()
    for name in PHOTOS:
        cv2.imwrite(
            str(root / "photos_small" / f"{name}.png"), getattr(skd, name)()[..., ::-1]
        )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_DATA", str(root))
        summary = export_local_features.main(ARGS)
    assert summary["images"] == 3
    return root


@pytest.fixture
def env(data_root, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(data_root))
    return data_root


def _conf(**kw):
    conf = {
        "data_dir": "photos_small", "image_dir": "", "image_list": None,
        "train_size": None, "val_size": 0, "max_image_size": 256,
        "homography": {"patch_shape": [192, 160]}, "photometric": {"name": "identity"},
        "load_features": {"do": True, "path": FILE, "max_num_keypoints": 128,
                          "force_num_keypoints": True},
    }  # fmt: skip
    conf.update(kw)
    return conf


def test_file_layout_resume_and_mismatch(env, capsys):
    with h5py.File(env / FILE, "r") as f:
        assert sorted(f) == sorted(f"{n}.png" for n in PHOTOS) and f.attrs["complete"]
        g = f["coffee.png"]
        assert g["keypoints"].shape == (512, 2) and g["descriptors"].shape == (512, 64)
        assert g["image_size"][()].tolist() == [600, 400]  # original pixels
        assert g["keypoints"][()].max(0)[0] > 320  # not in resized pixels
    assert export_local_features.main(ARGS)["skipped"] is True
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--overwrite"):
        export_local_features.run(
            export_local_features.parse_args([*ARGS, "model.nms_radius=3"])
        )


def test_views_carry_the_warped_cached_keypoints(env):
    """Cached keypoints of view0 mapped by H_0to1 are view1's (same source points), and
    lie on XFeat detections of the warped image (the warp matches the image's)."""
    split = get_dataset("homographies")(_conf()).get_dataset("train")
    xfeat = get_model("extractors.xfeat")({"max_num_keypoints": 1024}).eval()
    near = []
    for idx in range(2):
        item = split[idx]
        c0, c1 = item["view0"]["cache"], item["view1"]["cache"]
        assert c0["keypoints"].shape == (128, 2) and c0["descriptors"].shape == (
            128,
            64,
        )
        m0, m1 = c0["keypoint_mask"], c1["keypoint_mask"]
        assert m0.sum() > 30 and m1.sum() > 30
        size = torch.tensor([192.0, 160.0])
        for c in (c0, c1):
            assert ((c["keypoints"] >= 0) & (c["keypoints"] < size)).all()
        # the same source point in both views: identical descriptors
        d0, d1 = c0["descriptors"][m0], c1["descriptors"][m1]
        sim = d0 @ d1.T
        i, j = torch.nonzero(sim > 0.9999, as_tuple=True)
        assert len(i) > 5
        k01 = warp_points(c0["keypoints"][m0][i], item["H_0to1"])
        torch.testing.assert_close(k01, c1["keypoints"][m1][j], atol=1e-2, rtol=0)
        with torch.no_grad():
            live = xfeat({"image": item["view0"]["image"][None]})["keypoints"][0]
        dist = torch.cdist(c0["keypoints"][m0], live).min(1).values
        near.append((dist < 3).float().mean())
    assert torch.stack(near).mean() > 0.3, near


def test_read_image_false_same_geometry_without_reading(env, monkeypatch):
    with_images = get_dataset("homographies")(_conf()).get_dataset("train")[1]

    def boom(*a, **k):
        raise AssertionError("read")

    monkeypatch.setattr(homographies_module, "read_image", boom)
    item = get_dataset("homographies")(_conf(read_image=False)).get_dataset("train")[1]
    assert "image" not in item["view0"]
    torch.testing.assert_close(item["H_0to1"], with_images["H_0to1"])
    for i in (0, 1):
        a, b = item[f"view{i}"]["cache"], with_images[f"view{i}"]["cache"]
        for k in a:
            torch.testing.assert_close(a[k], b[k])
    with pytest.raises(AssertionError, match="read"):  # the check can fail
        get_dataset("homographies")(_conf()).get_dataset("train")[1]


def test_threshold_top_k_and_errors(env, tmp_path):
    with h5py.File(env / FILE, "r") as f:  # the split's first image is one of them
        th = float(np.median(np.concatenate([f[n]["keypoint_scores"][()] for n in f])))
    lf = {"do": True, "path": FILE, "thresh": th, "max_num_keypoints": 20}
    c = get_dataset("homographies")(_conf(load_features=lf)).get_dataset("train")[0]
    sc = c["view0"]["cache"]["keypoint_scores"]
    assert (
        0 < len(sc) <= 20
        and (sc > th).all()
        and "keypoint_mask" not in c["view0"]["cache"]
    )
    missing = {"do": True, "path": str(tmp_path / "none.h5")}
    split = get_dataset("homographies")(_conf(load_features=missing)).get_dataset(
        "train"
    )
    with pytest.raises(DataError, match="none.h5.*export_local_features"):
        split[0]
    bad = {"do": True, "path": FILE, "force_num_keypoints": True}
    with pytest.raises(ConfigError, match="max_num_keypoints"):
        get_dataset("homographies")(_conf(load_features=bad))
    with pytest.raises(ConfigError, match="read_image"):
        get_dataset("homographies")(
            _conf(read_image=False, load_features={"do": False})
        )
    assert np.isfinite(sc.numpy()).all()


@pytest.mark.parametrize("where", ["folder", "under_a_file"])
def test_output_that_cannot_be_a_file_is_refused_before_any_work(
    where, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path))
    monkeypatch.setattr(export_local_features, "DataLoader", pytest.fail)
    monkeypatch.setattr(export_local_features, "get_model", pytest.fail)
    (tmp_path / "a_file").write_text("x")
    output = tmp_path if where == "folder" else tmp_path / "a_file" / "out.h5"
    with pytest.raises(SystemExit) as e:
        export_local_features.main([*ARGS, "--output", str(output)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    expected = (
        f"error: --output {tmp_path} is a folder: give the path of a file"
        if where == "folder"
        else f"error: --output {output}: {tmp_path / 'a_file'} is a file, not a folder"
    )
    assert expected in err
