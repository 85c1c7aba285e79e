"""``python -m gluefactory.scripts.export_megadepth`` and training from its cache, on a
MegaDepth-layout tree converted from the real Middlebury Motorcycle pair, with XFeat
(official weights, cached offline) at a small resolution."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.datasets import get_dataset
from gluefactory.datasets import megadepth as megadepth_module
from gluefactory.datasets.sources.megadepth_convert import convert
from gluefactory.geometry.depth import sample_depth
from gluefactory.models import get_model
from gluefactory.scripts import export_megadepth
from gluefactory.utils.errors import ConfigError, DataError
from gluefactory.utils.tensor import collate

_HELPER = Path(__file__).parents[1] / "datasets" / "posed_motorcycle.py"
_spec = importlib.util.spec_from_file_location("posed_motorcycle", _HELPER)
posed_motorcycle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(posed_motorcycle)

CONFIGS = Path(__file__).parents[2] / "gluefactory" / "configs"
EXPORT_RESIZE, EXPORT_K = 320, 256
ARGS = [
    "--method", "xfeat", "--export_sparse_depth", "data.data_dir=megadepth",
    f"data.preprocessing.resize={EXPORT_RESIZE}", f"model.max_num_keypoints={EXPORT_K}",
]  # fmt: skip
CACHE = f"exports/megadepth-undist-depth-r{EXPORT_RESIZE}_XFeat-k{EXPORT_K}"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory, motorcycle_pair):
    """<data root>/megadepth (converted Motorcycle pair) and its XFeat export."""
    pytest.importorskip("skimage.data")
    src = tmp_path_factory.mktemp("posed")
    posed_motorcycle.write_posed_motorcycle(src, motorcycle_pair)
    root = tmp_path_factory.mktemp("data")
    convert(src, root / "megadepth", stride=8)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLUEFACTORY_DATA", str(root))
        summary = export_megadepth.main(ARGS)
    assert summary["exported"] == ["motorcycle"] and summary["images"] == 2
    return root


@pytest.fixture
def env(data_root, monkeypatch):
    monkeypatch.setenv("GLUEFACTORY_DATA", str(data_root))
    return data_root


def _conf(**kw):
    conf = {
        "data_dir": "megadepth",
        "train_split": ["motorcycle"],
        "train_num_per_scene": None,
        "min_overlap": 0.1,
        "preprocessing": {"resize": 256},
        "read_image": False,
        "load_features": {
            "do": True,
            "path": CACHE + "/{scene}.h5",
            "padding_length": 300,
        },
    }
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(conf.get(k), dict):
            conf[k] = {**conf[k], **v}
        else:
            conf[k] = v
    return conf


def test_cached_features_equal_the_live_extractor(env):
    """Stored arrays = XFeat on the exporter's resized image (float16 tolerance), with
    keypoints in original pixels and depths sampled in the original depth map."""
    file = env / CACHE / "motorcycle.h5"
    export = json.loads((env / CACHE / "export.json").read_text())
    assert export["method"] == "xfeat" and export["sparse_depth"] is True
    views = get_dataset("megadepth")(
        {"data_dir": "megadepth", "train_split": ["motorcycle"], "views": 1,
         "read_depth": False,
         "preprocessing": {"resize": EXPORT_RESIZE, "square_pad": False}}
    ).get_dataset("train")  # fmt: skip
    xfeat = get_model("extractors.xfeat")(
        {"max_num_keypoints": EXPORT_K, "detection_threshold": 0.0}
    ).eval()
    with h5py.File(file, "r") as f:
        assert f.attrs["complete"] and sorted(f) == ["left.png", "right.png"]
        for k in range(len(views)):
            item = views[k]
            grp = f[Path(item["name"]).name]
            assert grp["descriptors"].dtype == np.float16
            assert grp["keypoints"].dtype == np.float32
            with torch.no_grad():
                live = xfeat({"image": item["image"][None]})
            kp = live["keypoints"][0] / item["scales"]
            assert len(kp) == EXPORT_K
            torch.testing.assert_close(torch.from_numpy(grp["keypoints"][()]), kp)
            torch.testing.assert_close(
                torch.from_numpy(grp["descriptors"][()]).float(),
                live["descriptors"][0],
                atol=2e-3,
                rtol=0,
            )
            torch.testing.assert_close(
                torch.from_numpy(grp["keypoint_scores"][()]).float(),
                live["keypoint_scores"][0],
                atol=1e-3,
                rtol=1e-3,
            )
            w, h = (int(v) for v in item["original_image_size"])
            assert grp["image_size"][()].tolist() == [w, h]
            depth = views.read_depth_map(views.depth_path("motorcycle", k), (h, w))
            d, valid = sample_depth(kp, depth)
            assert valid.float().mean() > 0.5
            torch.testing.assert_close(
                torch.from_numpy(grp["valid_depth_keypoints"][()]), valid
            )
            torch.testing.assert_close(
                torch.from_numpy(grp["depth_keypoints"][()]).float(),
                d,
                rtol=1e-3,
                atol=1e-3,
            )


def test_keypoints_rescale_to_the_training_resize(env):
    """Training at long side 256 (export: 320): keypoints x scales, padded to 300 with
    keypoint_mask; the cached depths agree with the resized depth map at the rescaled
    keypoints (so the rescaling is geometrically right); truncation keeps the best."""
    ds = get_dataset("megadepth")(
        _conf(read_image=True, load_features={"skip_depth_map": False})
    )
    item = ds.get_dataset("train")[0]
    with h5py.File(env / CACHE / "motorcycle.h5", "r") as f:
        stored = torch.from_numpy(f["left.png/keypoints"][()])
        stored_scores = torch.from_numpy(f["left.png/keypoint_scores"][()]).float()
    v0 = item["view0"]
    cache = v0["cache"]
    assert v0["image_size"].tolist() == [256, 172]
    assert cache["keypoints"].shape == (300, 2) and cache["descriptors"].shape == (
        300,
        64,
    )
    mask = cache["keypoint_mask"]
    assert mask.sum() == EXPORT_K and not mask[EXPORT_K:].any()
    torch.testing.assert_close(cache["keypoints"][:EXPORT_K], stored * v0["scales"])
    pad = cache["keypoints"][~mask]
    assert (pad >= 0.5).all() and (pad <= v0["image_size"] - 0.5).all()
    assert (cache["keypoint_scores"][~mask] == 0).all()
    assert not cache["valid_depth_keypoints"][~mask].any()
    torch.testing.assert_close(
        cache["descriptors"][~mask].norm(dim=-1), torch.ones(300 - EXPORT_K)
    )

    def agreement(kpts):  # share of cached depths within 2% of the map at kpts
        d_map, ok = sample_depth(kpts, v0["depth"])
        both = ok & cache["valid_depth_keypoints"][mask]
        rel = (d_map[both] - cache["depth_keypoints"][mask][both]).abs() / d_map[both]
        assert both.sum() > 100
        return (rel < 0.02).float().mean()

    assert agreement(cache["keypoints"][mask]) > 0.8  # depth edges aside
    # control: keypoints left at the export's scale (320 / 256) would disagree
    assert agreement(cache["keypoints"][mask] * EXPORT_RESIZE / 256) < 0.6
    # fewer slots than stored keypoints: the best by score are kept
    cut = get_dataset("megadepth")(_conf(load_features={"padding_length": 100}))
    c = cut.get_dataset("train")[0]["view0"]["cache"]
    assert c["keypoint_mask"].all() and len(c["keypoints"]) == 100
    torch.testing.assert_close(
        c["keypoint_scores"].sort(descending=True).values,
        stored_scores.topk(100).values,
    )


def test_read_image_false_reads_neither_image_nor_depth(env, monkeypatch):
    """With the cache and read_image: false no image and no depth map is opened (#124);
    with read_image: true the (sabotaged) reader is called: the check can fail."""

    def boom(*a, **k):
        raise AssertionError("decoded")

    monkeypatch.setattr(megadepth_module, "read_image", boom)
    monkeypatch.setattr(megadepth_module._Split, "read_depth_map", staticmethod(boom))
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "open", boom)
    split = get_dataset("megadepth")(_conf()).get_dataset("train")
    item = split[0]
    assert "image" not in item["view0"] and "depth" not in item["view0"]
    assert item["view0"]["cache"]["depth_keypoints"].shape == (300,)
    assert item["view0"]["image_size"].tolist() == [256, 172]
    with pytest.raises(AssertionError, match="decoded"):
        get_dataset("megadepth")(_conf(read_image=True)).get_dataset("train")[0]
    with pytest.raises(AssertionError, match="decoded"):  # the depth map is needed
        get_dataset("megadepth")(
            _conf(load_features={"skip_depth_map": False})
        ).get_dataset("train")[0]


def test_resume_mismatch_and_overwrite(env, capsys):
    file = env / CACHE / "motorcycle.h5"
    before = file.stat().st_mtime_ns
    summary = export_megadepth.main(ARGS)
    assert summary["skipped"] == ["motorcycle"] and summary["exported"] == []
    assert file.stat().st_mtime_ns == before
    assert "skipped 1 already done" in capsys.readouterr().out
    other = [*ARGS, "model.detection_threshold=0.01"]  # same folder, other features
    with pytest.raises(ConfigError, match="--overwrite"):
        export_megadepth.run(export_megadepth.parse_args(other))
    with pytest.raises(SystemExit) as e:  # the CLI: one line, exit code 2
        export_megadepth.main(other)
    assert e.value.code == 2
    assert "another configuration" in capsys.readouterr().err
    try:
        summary = export_megadepth.main([*other, "--overwrite"])
        assert summary["exported"] == ["motorcycle"]
        assert file.stat().st_mtime_ns != before
    finally:  # restore the module's export for the other tests
        summary = export_megadepth.main([*ARGS, "--overwrite"])
    assert summary["exported"] == ["motorcycle"]
    with pytest.raises(ConfigError, match="data.views"):
        export_megadepth.build_conf("xfeat", ["data.views=2"])
    with pytest.raises(ConfigError, match="data.p_rotate"):  # exports stay upright
        export_megadepth.build_conf("xfeat", ["data.p_rotate=0.5"])
    with pytest.raises(ConfigError, match="max_num_keypointz"):
        export_megadepth.build_conf("xfeat", ["model.max_num_keypointz=3"])


def test_missing_or_corrupt_cache_is_a_clear_error(env, tmp_path):
    bad = {"path": str(tmp_path / "none/{scene}.h5")}
    split = get_dataset("megadepth")(_conf(load_features=bad)).get_dataset("train")
    with pytest.raises(DataError, match="export_megadepth") as e:
        split[0]
    assert str(tmp_path / "none" / "motorcycle.h5") in str(e.value)
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "motorcycle.h5").write_bytes(b"not an hdf5 file" * 10)
    bad = {"path": str(tmp_path / "corrupt/{scene}.h5")}
    split = get_dataset("megadepth")(_conf(load_features=bad)).get_dataset("train")
    with pytest.raises(DataError, match="corrupt.motorcycle.h5.*--overwrite"):
        split[0]
    with h5py.File(tmp_path / "corrupt" / "motorcycle.h5", "w") as f:
        f.attrs["complete"] = True
        f.create_group("other.png")
    split = get_dataset("megadepth")(_conf(load_features=bad)).get_dataset("train")
    with pytest.raises(DataError, match="no features for image 'left.png'"):
        split[0]
    with pytest.raises(ConfigError, match="padding_fn"):
        get_dataset("megadepth")(_conf(load_features={"padding_fn": "zeros"}))


@pytest.mark.slow
def test_train_two_iterations_from_the_cache(env, tmp_path, monkeypatch):
    """The shipped xfeat+lightglue_megadepth config with load_features.do, read_image
    false and allow_no_extract trains 2 steps (and validates) with the extractor never
    called and no image or depth map read."""
    from gluefactory.models.extractors.xfeat import XFeat
    from gluefactory.trainer.launch import train

    def boom(*a, **k):
        raise AssertionError("not from the cache")

    monkeypatch.setattr(XFeat, "_forward", boom)
    monkeypatch.setattr(megadepth_module, "read_image", boom)
    monkeypatch.setattr(megadepth_module._Split, "read_depth_map", staticmethod(boom))
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    conf = OmegaConf.load(CONFIGS / "xfeat+lightglue_megadepth.yaml")
    assert conf.data.load_features.do is False  # off by default, path pre-filled
    tiny = {
        "data_dir": "megadepth", "train_split": ["motorcycle"],
        "val_split": ["motorcycle"], "val_pairs": str(env / "megadepth" / "pairs.txt"),
        "train_num_per_scene": None, "batch_size": 1, "num_workers": 0,
        "max_overlap": 1.0, "preprocessing": {"resize": 256}, "read_image": False,
        "load_features": {"do": True, "path": CACHE + "/{scene}.h5",
                          "padding_length": 64},
    }  # fmt: skip
    conf.data = OmegaConf.merge(conf.data, tiny)
    conf.model.allow_no_extract = True
    conf.train = OmegaConf.merge(
        conf.train,
        {"max_steps": 2, "eval_0": False, "log_every_iter": 1, "plot": 0,
         "save_every_iter": 1000, "load_experiment": None, "device": "cpu"},
    )  # fmt: skip
    summary = train("md_cache", OmegaConf.to_container(conf), overwrite=True)
    assert summary["step"] == 2 and summary["status"] == "max_steps", summary
    recs = [
        json.loads(ln)
        for ln in (tmp_path / "training" / "md_cache" / "metrics.jsonl")
        .read_text()
        .splitlines()
    ]
    losses = [r["loss/total"] for r in recs if r["kind"] == "train"]
    assert len(losses) == 2 and all(map(math.isfinite, losses))
    val = [r for r in recs if r["kind"] == "val"]
    assert val and val[-1]["match_recall"] > 0


def test_pipeline_gt_uses_cached_keypoint_depths(env):
    """TwoViewPipeline (allow_no_extract) + depth_matcher on a cached pair without depth
    maps: positives exist and are consistent with the pose."""
    batch = collate([get_dataset("megadepth")(_conf()).get_dataset("train")[0]])
    model = get_model("two_view_pipeline")(
        {"allow_no_extract": True, "run_gt_in_forward": True,
         "ground_truth": {"name": "matchers.depth_matcher"}}
    )  # fmt: skip
    pred = model(batch)
    m0 = pred["gt_matches0"][0]
    assert (m0 >= 0).sum() > 20
    assert (m0[~batch["view0"]["cache"]["keypoint_mask"][0]] == -2).all()
    # a positive is a point whose stereo correspondence (same row) is the match
    k0, k1 = pred["keypoints0"][0], pred["keypoints1"][0]
    pos = m0 >= 0
    dy = (k0[pos, 1] - k1[m0[pos], 1]).abs()
    assert (dy < 3).float().mean() > 0.95


def test_dataset_with_open_cache_pickles(env):
    """Spawned DataLoader workers pickle the dataset: open HDF5 handles stay behind."""
    import pickle

    split = get_dataset("megadepth")(_conf()).get_dataset("train")
    a = split[0]
    b = pickle.loads(pickle.dumps(split))[0]
    torch.testing.assert_close(a["view0"]["cache"], b["view0"]["cache"])


def test_numeric_type_and_data_keys(env):
    lf = {"numeric_type": "float16", "data_keys": ["keypoints", "descriptors"]}
    c = get_dataset("megadepth")(_conf(load_features=lf)).get_dataset("train")[0]
    c = c["view0"]["cache"]
    assert c["descriptors"].dtype == torch.float16
    assert set(c) == {"keypoints", "descriptors", "keypoint_mask"}
    with pytest.raises(DataError, match="oris"):
        get_dataset("megadepth")(
            _conf(load_features={"data_keys": ["keypoints", "oris"]})
        ).get_dataset("train")[0]
    with pytest.raises(ConfigError, match="numeric_type"):
        get_dataset("megadepth")(_conf(load_features={"numeric_type": "int8"}))


def test_sift_scales_in_original_pixels(env):
    """SIFT's scales (sigma, px) are stored in original pixels and rescaled on load."""
    args = ["--method", "cv2-sift", "data.data_dir=megadepth",
            "data.preprocessing.resize=320", "model.max_num_keypoints=128"]  # fmt: skip
    export_megadepth.main(args)
    path = "exports/megadepth-undist-depth-r320_opencv-SIFT-k128/{scene}.h5"
    views = get_dataset("megadepth")(
        {"data_dir": "megadepth", "train_split": ["motorcycle"], "views": 1,
         "read_depth": False, "preprocessing": {"resize": 320, "square_pad": False}}
    ).get_dataset("train")  # fmt: skip
    item = views[0]
    sift = get_model("extractors.sift")(
        export_megadepth.extractor_conf("cv2-sift", {"max_num_keypoints": 128})
    )
    live = sift({"image": item["image"][None]})
    with h5py.File(env / path.format(scene="motorcycle"), "r") as f:
        stored = torch.from_numpy(f["left.png/scales"][()]).float()
        assert "oris" in f["left.png"]
    s320 = item["scales"].mean()
    torch.testing.assert_close(stored, live["scales"][0] / s320, rtol=2e-3, atol=1e-3)
    conf = _conf(load_features={"path": path, "padding_length": 128})
    v0 = get_dataset("megadepth")(conf).get_dataset("train")[0]["view0"]
    torch.testing.assert_close(
        v0["cache"]["scales"].sort().values,
        (stored * v0["scales"].mean()).sort().values,
    )


CONFIG_METHOD = {
    "aliked": "aliked", "disk": "disk", "sift": "pycolmap-sift", "superpoint": "sp",
    "superpoint-open": "sp_open", "xfeat": "xfeat",
}  # fmt: skip


@pytest.mark.parametrize("features", sorted(CONFIG_METHOD))
def test_training_configs_point_at_their_export(features):
    """Each *_megadepth config's load_features.path is the folder its method's export
    writes, the preset extracts what the config would extract live, and the documented
    override composes into a valid training config."""
    from gluefactory.trainer.config import build_train_conf
    from gluefactory.utils.conf import as_plain, compose

    name = f"{features}+lightglue_megadepth"
    method = CONFIG_METHOD[features]
    conf = OmegaConf.load(CONFIGS / f"{name}.yaml")
    model, data = export_megadepth.build_conf(method, [])
    folder = export_megadepth.export_name(method, model, data)
    assert conf.data.load_features.path == f"exports/{folder}/{{scene}}.h5"
    assert conf.data.load_features.do is False
    live = as_plain(
        get_model(conf.model.extractor.name).build_conf(conf.model.extractor)
    )
    for key in ("force_num_keypoints", "trainable"):
        live.pop(key), model.pop(key)
    assert model == live
    overrides = ["data.load_features.do=true", "data.read_image=false",
                 "model.allow_no_extract=true"]  # fmt: skip
    full = build_train_conf(compose(name, overrides))
    ds = get_dataset("megadepth").build_conf(full.data)
    assert ds.load_features.do and ds.load_features.padding_length == 2048


def test_scene_list_file(env, tmp_path):
    """--scenes: a file relative to the MegaDepth folder (the converter's scenes.txt) or
    anywhere; an unknown scene is a DataError naming it."""
    assert (env / "megadepth" / "scenes.txt").read_text().split() == ["motorcycle"]
    summary = export_megadepth.main([*ARGS, "--scenes", "scenes.txt"])
    assert summary["skipped"] == ["motorcycle"]
    other = tmp_path / "list.txt"
    other.write_text("motorcycle\nnope\n")
    with pytest.raises(DataError, match="nope"):
        export_megadepth.run(
            export_megadepth.parse_args([*ARGS, "--scenes", str(other)])
        )


def test_every_upstream_method_name_is_accepted_or_explained(capsys):
    """Upstream's --method names all parse: each one shipped builds its preset (the
    GPU SIFT one with pycolmap's CUDA backend); keynet-affnet-hardnet, not shipped, is
    a one-line error saying so, not argparse's "invalid choice"."""
    upstream = ["sp", "sp_open", "cv2-sift", "pycolmap-sift", "pycolmap-sift-gpu",
                "keynet-affnet-hardnet", "disk", "aliked"]  # fmt: skip
    for method in upstream:
        assert export_megadepth.parse_args(["--method", method]).method == method
    fmt, preset = export_megadepth.METHODS["pycolmap-sift-gpu"]
    assert preset["backend"] == "pycolmap_cuda" and preset["nms_radius"] == 3
    assert fmt.format(k=2048) == "pycolmap_SIFTGPU-nms3-fixed-k2048"  # upstream's
    with pytest.raises(ConfigError, match="keynet-affnet-hardnet.*not implemented"):
        export_megadepth.build_conf("keynet-affnet-hardnet", [])
    with pytest.raises(SystemExit) as e:
        export_megadepth.main(["--method", "keynet-affnet-hardnet"])
    assert e.value.code == 2
    assert "another --method" in capsys.readouterr().err
