"""The benchmark of any image folder: seeded warps of the training data, HPatches
metrics, the same through the command line and the Python stages."""

from __future__ import annotations

import pytest
import torch

from gluefactory.datasets import get_dataset
from gluefactory.eval import stages
from gluefactory.eval.cli import run_benchmark
from gluefactory.eval.homographies import HomographiesPipeline
from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.results import read_results
from gluefactory.models.two_view_pipeline import TwoViewPipeline
from gluefactory.utils.conf import as_plain, load_conf

IMAGES = "data.glob=[skimage_coffee.png,skimage_chelsea.png]"
ARGS = [
    "--conf",
    "sift+NN",
    IMAGES,
    "data.items_per_image=2",
    "model.extractor.max_num_keypoints=512",
    "eval.progress=false",
    "eval.num_worst=1",
    "eval.gt_matches=true",
]


def test_pairs_are_seeded_warps_of_the_training_difficulty(roots):
    bench = HomographiesPipeline({"data": {"glob": ["skimage_coffee.png"]}})
    dataset = get_dataset("homographies")
    assert "homography" not in bench.conf.data  # the training data's warps
    a = dataset(bench.conf.data).get_dataset("test")
    b = dataset(bench.conf.data).get_dataset("test")
    assert a.conf.homography == dataset.defaults().homography
    assert len(a) == 5 and [a[i]["name"] for i in range(2)] == [
        "skimage_coffee.png#0",
        "skimage_coffee.png#1",
    ]
    assert torch.equal(a[1]["H_0to1"], b[1]["H_0to1"])  # same pairs on every run
    assert not torch.allclose(a[0]["H_0to1"], a[1]["H_0to1"])
    assert not torch.allclose(a[0]["H_0to1"], torch.eye(3), atol=0.1)


def test_cli_and_python_stages_give_the_same_results(roots, monkeypatch):
    summaries, out = run_benchmark(HomographiesPipeline, ARGS)
    res = read_results(out / "results.h5")
    assert len(res["names"]) == 4
    assert set(dict(HPatchesPipeline.reported).values()) <= set(summaries)
    # real features on real photos: the known warps are mostly recovered
    assert summaries["mprec@3px"] > 0.5
    # the training's metrics against the labels of all keypoints, with standard errors
    assert 0.5 < summaries["mean_match_prec"] <= 1
    assert 0 < summaries["mean_match_rec"] <= 1
    assert 0 < summaries["sem_match_rec"] < 0.5
    assert (out / "worst_pairs.png").is_file()

    # the same benchmark from Python, with a config dict, on the cached predictions
    def no_forward(*args, **kwargs):
        raise AssertionError("the network ran although the predictions are cached")

    monkeypatch.setattr(TwoViewPipeline, "_forward", no_forward)
    model = as_plain(load_conf("sift+NN").model)
    model["extractor"]["max_num_keypoints"] = 512
    conf = {
        "data": {
            "glob": ["skimage_coffee.png", "skimage_chelsea.png"],
            "items_per_image": 2,
        },
        "model": model,
        "eval": {"progress": False, "num_worst": 0, "gt_matches": True},
    }
    bench = stages.load_benchmark("homographies", conf)
    pred = stages.export_predictions(bench, out.parent / "py")  # the CLI run's
    results = stages.evaluate(bench, pred)
    assert results.names == res["names"]
    assert results.records[0].H_0to1.shape == (3, 3)
    py = stages.summarize(bench, results)
    assert py == pytest.approx(summaries, nan_ok=True)
