"""Issue criterion (a) on real features: ``--overfit`` on one batch of XFeat features
of real photographs (and their homography warps) drives the loss down and that batch's
match recall above 0.95 within a few hundred steps (here 80)."""

from __future__ import annotations

import json

import pytest

from gluefactory.trainer import train


@pytest.mark.slow
def test_overfit_real_xfeat_batch(outputs):
    pytest.importorskip("skimage")
    from gluefactory.weights import cache_path

    if not cache_path("xfeat").exists():
        pytest.skip(
            "XFeat weights are not in the cache (python -m gluefactory.weights)"
        )

    conf = {
        "data": {"name": "real_pairs", "batch_size": 2, "num": 200},
        "model": {
            "name": "two_view_pipeline",
            "extractor": {
                "name": "extractors.xfeat",
                "max_num_keypoints": 256,
                "force_num_keypoints": True,
                "detection_threshold": -1,
                "seed": 0,
            },
            "matcher": {
                "name": "matchers.lightglue",
                "input_dim": 64,
                "descriptor_dim": 64,
                "n_layers": 3,
                "num_heads": 1,
            },
            "ground_truth": {
                "name": "matchers.homography_matcher",
                "th_positive": 3,
                "th_negative": 5,
            },
        },
        "train": {
            "overfit": True,
            "eval_0": False,
            "log_every_iter": 10,
            "lr": 1e-3,
            "max_steps": 80,
            "device": "cpu",
            "seed": 0,
        },
    }
    train("overfit_real", conf)
    logs = [
        json.loads(x)
        for x in (outputs / "overfit_real" / "metrics.jsonl").read_text().splitlines()
    ]
    logs = [r for r in logs if r["kind"] == "train"]
    assert logs[-1]["loss/total"] < logs[0]["loss/total"] / 3
    assert logs[-1]["match_recall"] > 0.95
