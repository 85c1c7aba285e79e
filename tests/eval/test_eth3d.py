"""ETH3D benchmark: the AP metric (hand-computed), labels and pooled AP of records, the
benchmark's config, and end-to-end runs on the built-in ETH3D-layout set."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gluefactory.eval import metrics as M
from gluefactory.eval.eth3d import ETH3DPipeline, label_errors, pooled_ap
from gluefactory.eval.records import PairRecord
from gluefactory.utils.errors import ConfigError

# --------------------------------------------------------------------------------------
# average_precision


def test_average_precision_hand_computed():
    # the ignored match (-1) goes first by score and must not count; sorted by score:
    # labels 1 0 1 1 -> TP 1 1 2 3, recall (4 positives) .25 .25 .5 .75,
    # precision 1 .5 .667 .75, envelope 1 .75 .75 .75 ->
    # AP = .25 * 1 + .25 * .75 + .25 * .75 + .25 * 0 = .625
    ap, recall, precision = M.average_precision(
        [1, 0, 1, -1, 1], [0.9, 0.8, 0.7, 0.95, 0.1], num_positives=4
    )
    assert ap == pytest.approx(62.5)
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(precision, [1, 0.5, 2 / 3, 0.75])


def test_average_precision_order_and_edge_cases():
    # the same matches in another order give the same AP (sorted by score)
    ap1 = M.average_precision([1, 0, 1, 1], [0.9, 0.8, 0.7, 0.1], 4)[0]
    ap2 = M.average_precision([1, 1, 0, 1], [0.1, 0.7, 0.8, 0.9], 4)[0]
    assert ap1 == ap2
    # all correct, every positive found: 100; wrong first by score: lower
    assert M.average_precision([1, 1], [0.5, 0.4], 2)[0] == pytest.approx(100)
    assert M.average_precision([0, 1], [0.9, 0.4], 1)[0] == pytest.approx(50)
    # no match, or no positive (1 is used): 0, no crash
    assert M.average_precision([], [], 0)[0] == 0
    assert M.average_precision([0, 0], [1, 1], 0)[0] == 0
    with pytest.raises(ValueError, match="differ"):
        M.average_precision([1, 0], [1.0], 2)


# --------------------------------------------------------------------------------------
# Records: labels, pair metrics, pooled AP


def record(matches0, scores, gt0, n1=4) -> PairRecord:
    m0 = torch.tensor(matches0)
    pred = {
        "keypoints0": torch.rand(len(m0), 2) * 50,
        "keypoints1": torch.rand(n1, 2) * 50,
        "matches0": m0,
        "matching_scores0": torch.tensor(scores, dtype=torch.float32),
    }
    rec = PairRecord.from_batch({"name": "p"}, pred)
    rec.gt_matches0 = torch.tensor(gt0)
    return rec


def test_labels_metrics_and_errors():
    # keypoint 0 -> 2 correct, 1 -> 0 wrong (truth 3), 2 -> 1 ignored, 3 unmatched
    rec = record([2, 0, 1, -1], [0.9, 0.5, 0.7, 0.0], [2, 3, -2, 1])
    assert rec.match_indices.tolist() == [[0, 2], [1, 0], [2, 1]]
    assert rec.labels().tolist() == [1, 0, -1]
    m = M.labelled_match_metrics(rec)
    assert m["match_prec"] == 0.5 and m["match_rec"] == pytest.approx(1 / 3)
    assert m["num_matches"] == 3
    err = label_errors(rec)
    assert err[:2].tolist() == [0, 1] and math.isnan(err[2])


def test_pooled_ap_over_pairs_points_and_lines():
    a = record([0, 1], [0.9, 0.2], [0, 0])  # correct (0.9), wrong (0.2); 2 positives
    b = record([1, -1], [0.5, 0.0], [1, -1])  # correct (0.5); 1 positive
    ap, recall, _ = pooled_ap([a, b])
    # pooled by score: 1 (a), 1 (b), 0 (a); 3 positives -> AP 2/3
    assert ap == pytest.approx(100 * 2 / 3) and recall[-1] == pytest.approx(2 / 3)
    assert pooled_ap([a, b], lines=True) is None  # no line ground truth
    a.gt_matches0 = None
    assert pooled_ap([a]) is None  # no point ground truth


def test_benchmark_config():
    bench = ETH3DPipeline({"data": {"root": "builtin/eth3d", "downsize_factor": 1}})
    assert bench.thresholds == []  # no robust estimation
    assert bench.conf.data.min_covisibility == 500 and bench.conf.eval.eval_lines
    with pytest.raises(ConfigError, match="ransac_thh"):
        ETH3DPipeline({"eval": {"ransac_thh": 1}})


# --------------------------------------------------------------------------------------
# End to end on the built-in ETH3D-layout set


@pytest.mark.slow
def test_builtin_eth3d_end_to_end(roots):
    """xfeat+lsd+NN on the full built-in set (24 pairs): the command of the docs."""
    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.results import read_results

    summaries, out = run_benchmark(
        ETH3DPipeline,
        [
            "--conf",
            "xfeat+lsd+NN",
            "data.root=builtin/eth3d",
            "data.downsize_factor=1",
            "eval.progress=false",
        ],
    )
    assert 10 < summaries["AP"] < 100 and 10 < summaries["AP_lines"] < 100
    assert summaries["mean_match_prec"] > 0.3 and summaries["mean_line_prec"] > 0.3
    assert "ransac_th" not in summaries
    res = read_results(out / "results.h5")
    assert len(res["names"]) == 24 and len(res["line_rec"]) == 24
    assert (out / "pr_curve.png").stat().st_size > 0


def test_small_builtin_room_end_to_end(roots):
    """One small room (3 views, 3 pairs) through export, ground truth and AP."""
    from gluefactory.datasets.sources import builtin_eth3d
    from gluefactory.eval.cli import run_benchmark

    data = roots / "data" / "room"
    builtin_eth3d.build(data, seed=0, rooms=1, views=3, supersample=1)
    args = [
        "--conf",
        "xfeat+lsd+NN",
        f"data.root={data}",
        "data.downsize_factor=2",
        "model.extractor.point_extractor.max_num_keypoints=128",
        "model.extractor.line_extractor.max_num_lines=30",
        "eval.progress=false",
        "--tag",
        "small",
    ]
    summaries, out = run_benchmark(ETH3DPipeline, args)
    assert 0 < summaries["AP"] <= 100 and 0 < summaries["AP_lines"] <= 100
    assert math.isfinite(summaries["mean_line_rec"])
    assert (out / "pr_curve.png").exists()
    # lines off, from the same predictions: the same point AP, no line rows
    summaries2, _ = run_benchmark(
        ETH3DPipeline, [*args, "eval.eval_lines=false", "--overwrite_eval"]
    )
    assert summaries2["AP"] == pytest.approx(summaries["AP"])
    assert "AP_lines" not in summaries2 and "mean_line_prec" not in summaries2


def test_shipped_eth3d_sections_compose():
    """Every shipped config with a ``benchmarks.eth3d`` section gives a valid config
    (upstream's ``ground_truth`` key there would be refused)."""
    from pathlib import Path

    import gluefactory
    from gluefactory.eval.io import compose_eval_conf
    from gluefactory.utils.conf import load_conf

    configs = Path(gluefactory.__file__).parent / "configs"
    names = [p.stem for p in sorted(configs.glob("*.yaml"))]
    with_eth3d = [n for n in names if "eth3d" in (load_conf(n).get("benchmarks") or {})]
    assert {"xfeat+lsd+NN", "aliked+lsd+NN", "superpoint+lsd+gluestick"} <= set(
        with_eth3d
    )
    for name in with_eth3d:
        conf = ETH3DPipeline(compose_eval_conf("eth3d", name)).conf
        assert conf.eval.eval_lines and conf.data.downsize_factor == 8
