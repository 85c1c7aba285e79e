"""The two-stage recipe end to end on tiny offline data: homography pre-training,
MegaDepth-format fine-tuning with ``train.load_experiment``, then ``eval --checkpoint``
on the built-in HPatches-format set."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import pytest
from omegaconf import OmegaConf

from gluefactory.trainer import train

TESTS = Path(__file__).resolve().parents[1]


def _posed_motorcycle():
    spec = importlib.util.spec_from_file_location(
        "posed_motorcycle", TESTS / "datasets" / "posed_motorcycle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_homography_then_megadepth_then_eval_checkpoint(
    outputs, tmp_path, motorcycle_pair, caplog
):
    skd = pytest.importorskip("skimage.data")
    from gluefactory.datasets.sources.megadepth_convert import convert
    from gluefactory.weights import cache_path

    if not cache_path("xfeat").exists():
        pytest.skip("XFeat weights are not in the cache")
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("coffee", "astronaut", "rocket", "chelsea"):
        cv2.imwrite(str(photos / f"{name}.png"), getattr(skd, name)()[..., ::-1])
    posed, megadepth = tmp_path / "posed", tmp_path / "megadepth"
    _posed_motorcycle().write_posed_motorcycle(posed, motorcycle_pair)
    convert(posed, megadepth, stride=8)

    short = {
        "max_steps": 2,
        "eval_0": False,
        "log_every_iter": 1,
        "plot": 0,
        "device": "cpu",
    }
    conf = OmegaConf.load(
        TESTS.parent / "gluefactory/configs/xfeat+lightglue_homography.yaml"
    )
    conf.data = OmegaConf.merge(conf.data, {
        "data_dir": str(photos), "image_dir": "", "image_list": None, "train_size": None,
        "val_size": 1, "batch_size": 2, "num_workers": 0, "homography": {"patch_shape": [256, 192]}})  # fmt: skip
    conf.model.extractor.max_num_keypoints = 64
    conf.train = OmegaConf.merge(conf.train, short)
    assert train("xf_homography", OmegaConf.to_container(conf))["status"] == "max_steps"

    conf = OmegaConf.load(
        TESTS.parent / "gluefactory/configs/xfeat+lightglue_megadepth.yaml"
    )
    conf.data = OmegaConf.merge(conf.data, {
        "data_dir": str(megadepth), "train_split": ["motorcycle"], "val_split": ["motorcycle"],
        "val_pairs": str(megadepth / "pairs.txt"), "train_num_per_scene": None, "batch_size": 1,
        "num_workers": 0, "max_overlap": 1.0, "preprocessing": {"resize": 256}})  # fmt: skip
    conf.model.extractor.max_num_keypoints = 64
    conf.train = OmegaConf.merge(
        conf.train, {**short, "load_experiment": "xf_homography"}
    )
    caplog.set_level("INFO")
    res = train("xf_megadepth", OmegaConf.to_container(conf))
    assert res["status"] == "max_steps" and res["step"] == 2
    assert "Initialised from" in caplog.text and "xf_homography" in caplog.text

    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.hpatches import HPatchesPipeline

    summary, out = run_benchmark(
        HPatchesPipeline,
        ["--checkpoint", "xf_megadepth", "data.data_dir=builtin/hpatches",
         "model.extractor.max_num_keypoints=128", "eval.progress=false",
         "eval.num_worst=0", "eval.workers=1"],
    )  # fmt: skip
    assert 0 <= summary["mprec@3px"] <= 1 and summary["mnum_keypoints"] == 128
