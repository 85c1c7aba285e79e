"""Lines in the evaluation: records, line metrics, export round trip, line ground truth,
the point+line estimator in the robust metrics, and an end-to-end run (slow)."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from gluefactory.eval import metrics as M
from gluefactory.eval.export import LINE_EXPORT_KEYS, from_export, to_export
from gluefactory.eval.figures import line_colors, line_title
from gluefactory.eval.hpatches import HPatchesPipeline
from gluefactory.eval.records import PairRecord, matched_lines
from gluefactory.eval.results import PredictionReader, PredictionWriter
from gluefactory.geometry.homography import warp_points
from gluefactory.visualization import viz2d


def segments(n: int, seed: int = 0, size: float = 400.0) -> torch.Tensor:
    """(n, 2, 2) random segments 40-150 px long inside [20, size - 20]^2."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(80, size - 80, (n, 2))
    ang = rng.uniform(0, np.pi, n)
    length = rng.uniform(40, 150, n)
    d = np.stack([np.cos(ang), np.sin(ang)], -1) * length[:, None] / 2
    return torch.from_numpy(np.stack([p - d, p + d], 1))


def record(line_matches0, gt0, num_lines=(4, 4)) -> PairRecord:
    """A record with line matches ``line_matches0`` (L0,) and GT ``gt0`` (L0,)."""
    m0 = torch.tensor(line_matches0)
    lines = segments(max(num_lines))
    pred = {
        "keypoints0": torch.zeros(0, 2),
        "keypoints1": torch.zeros(0, 2),
        "matches0": torch.zeros(0, dtype=torch.long),
        "lines0": lines[: num_lines[0]],
        "lines1": lines[: num_lines[1]],
        "line_matches0": m0,
    }
    rec = PairRecord.from_batch({"name": "p"}, pred)
    rec.gt_line_matches0 = None if gt0 is None else torch.tensor(gt0)
    return rec


# --------------------------------------------------------------------------------------
# Records and line metrics


def test_record_holds_matched_segments_and_counts():
    rec = record([2, -1, 0, -1], None, num_lines=(4, 3))
    assert rec.num_lines == (4, 3)
    assert rec.num_line_matches == 2
    assert rec.line_matches.tolist() == [[0, 2], [2, 0]]
    lines = segments(4)
    assert torch.equal(rec.lines0, lines[[0, 2]].double())
    assert torch.equal(rec.lines1, lines[[2, 0]].double())
    assert rec.line_scores.tolist() == [1.0, 1.0]


def test_record_without_lines_has_no_line_fields():
    pred = {
        "keypoints0": torch.zeros(1, 2),
        "keypoints1": torch.zeros(1, 2),
        "matches0": torch.tensor([0]),
    }
    rec = PairRecord.from_batch({"name": "p"}, pred)
    assert rec.lines0 is None and rec.num_lines is None
    assert rec.line_labels() is None
    assert M.line_match_metrics(rec) == {}


def test_matched_lines_prefers_orig_lines_and_skips_padding():
    lines = segments(3)
    pred = {
        "lines0": lines,
        "lines1": lines,
        "orig_lines0": lines + 1,
        "orig_lines1": lines + 2,
        "line_mask0": torch.tensor([True, True, False]),
        "line_matches0": torch.tensor([1, -1, -1]),
        "line_matching_scores0": torch.tensor([0.7, 0.0, 0.0]),
    }
    m0, m1, scores, idx, counts = matched_lines(pred)
    assert torch.equal(m0, lines[[0]] + 1) and torch.equal(m1, lines[[1]] + 2)
    assert scores.tolist() == pytest.approx([0.7]) and idx.tolist() == [[0, 1]]
    assert counts == (2, 3)


def test_line_precision_and_recall_hand_made():
    # matches: 0->2 correct, 1->1 wrong (GT 3), 2->0 ignored (GT -2), 3 unmatched
    # matchable lines of image 0: 0, 1 (GT >= 0); line 3 has GT -1
    rec = record([2, 1, 0, -1], [2, 3, -2, -1])
    assert rec.line_labels().tolist() == [1, 0, -1]
    out = M.line_match_metrics(rec)
    assert out == {
        "num_lines": 4.0,
        "num_line_matches": 3.0,
        "line_prec": pytest.approx(1 / 2),  # the ignored match is not counted
        "line_rec": pytest.approx(1 / 2),
    }


def test_line_metrics_undefined_cases_are_nan():
    no_gt = M.line_match_metrics(record([0, -1, -1, -1], None))
    assert math.isnan(no_gt["line_prec"]) and math.isnan(no_gt["line_rec"])
    only_ignored = M.line_match_metrics(record([0, -1, -1, -1], [-2, -1, -1, -1]))
    assert math.isnan(only_ignored["line_prec"]) and math.isnan(
        only_ignored["line_rec"]
    )
    no_match = M.line_match_metrics(record([-1, -1, -1, -1], [0, -1, -1, -1]))
    assert no_match["num_line_matches"] == 0
    assert math.isnan(no_match["line_prec"]) and no_match["line_rec"] == 0.0


def test_summary_keys_name_their_aggregation():
    s = M.summarize({"line_prec": [0.5, math.nan, 1.0], "H_error_ransac_points": [0.5]})
    assert s["median_line_prec"] == 0.75 and s["mean_line_prec"] == 0.75
    assert {"H_error_ransac_points@1px", "H_error_ransac_points_mAA"} <= set(s)


# --------------------------------------------------------------------------------------
# Export: lines in original pixels, one list of line keys


def test_export_roundtrip_of_lines(tmp_path):
    data = {
        "view0": {"scales": torch.tensor([[0.5, 0.25]])},
        "view1": {"scales": torch.tensor([[2.0, 2.0]])},
    }
    line = torch.tensor([[[10.0, 10.0], [30.0, 20.0]]])
    pred = {
        "keypoints0": torch.tensor([[[10.0, 10.0]]]),
        "keypoints1": torch.tensor([[[10.0, 10.0]]]),
        "matches0": torch.tensor([[0]]),
        "lines0": line[None],
        "lines1": line[None],
        "orig_lines0": line[None] + 1,
        "orig_lines1": line[None] + 1,
        "line_mask0": torch.tensor([[True]]),
        "line_mask1": torch.tensor([[True]]),
        "line_matches0": torch.tensor([[0]]),
        "line_matches1": torch.tensor([[0]]),
        "line_matching_scores0": torch.tensor([[0.9]]),
        "line_matching_scores1": torch.tensor([[0.9]]),
    }
    stored = to_export(data, pred)
    assert set(LINE_EXPORT_KEYS) <= set(stored)
    assert stored["lines0"].tolist() == [[[20.0, 40.0], [60.0, 80.0]]]
    assert stored["lines1"].tolist() == [[[5.0, 5.0], [15.0, 10.0]]]
    assert stored["orig_lines0"].tolist() == [[[22.0, 44.0], [62.0, 84.0]]]
    assert stored["line_matches0"].tolist() == [0]  # indices are not rescaled
    with PredictionWriter(tmp_path / "p.h5", "h") as w:
        w.write("a/b", stored)
    with PredictionReader(tmp_path / "p.h5") as r:
        back = from_export(data, r.read("a/b"))
    for k in ("lines0", "lines1", "orig_lines0", "orig_lines1"):
        assert torch.allclose(back[k], pred[k][0]), k
    assert back["line_mask0"].dtype == torch.bool
    assert back["line_matching_scores0"].tolist() == pytest.approx([0.9])


# --------------------------------------------------------------------------------------
# Line ground truth and the point+line estimator in the homography benchmark


H = torch.tensor([[0.9, 0.1, 20.0], [-0.05, 1.1, 10.0], [1e-4, 2e-4, 1.0]]).double()


def warped(lines: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    return warp_points(lines.reshape(-1, 2), H).reshape(lines.shape)


def test_line_ground_truth_from_the_homography_matcher():
    lines0 = segments(6, seed=1)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    lines1 = warped(lines0, H)[perm]
    pred = {
        "keypoints0": torch.zeros(0, 2),
        "keypoints1": torch.zeros(0, 2),
        "matches0": torch.zeros(0, dtype=torch.long),
        "lines0": lines0.float(),
        "lines1": lines1.float(),
        "line_mask0": torch.tensor([True] * 5 + [False]),
        "line_matches0": torch.full((6,), -1),
    }
    size = torch.tensor([[400.0, 400.0]])
    data = {
        "H_0to1": H[None].float(),
        "view0": {"image_size": size},
        "view1": {"image_size": size},
    }
    bench = HPatchesPipeline({"eval": {"progress": False}})
    gt = bench.line_ground_truth(data, pred)
    expected = torch.argsort(perm)  # line i of image 0 is line inv[i] of image 1
    assert gt[:5].tolist() == expected[:5].tolist()
    assert gt[5] == -2  # padded


def test_line_ground_truth_of_the_posed_benchmark_from_depth():
    from gluefactory.eval.megadepth1500 import MegaDepth1500Pipeline
    from gluefactory.geometry.wrappers import Camera, Pose

    K = torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    cam = Camera.from_calibration_matrix(K, (640, 480))[None]
    view = {"camera": cam, "depth": torch.full((1, 480, 640), 2.0)}
    data = {
        "T_0to1": Pose.from_Rt(torch.eye(3), torch.tensor([-0.1, 0, 0.0]))[None],
        "view0": view,
        "view1": view,
    }
    lines0 = torch.tensor([[[100.0, 100], [300, 120]], [[50, 400], [60, 250]]])
    pred = {  # depth 2 m, 0.1 m to the left: 25 px to the left in image 1
        "lines0": lines0,
        "lines1": (lines0 - torch.tensor([25.0, 0]))[[1, 0]],
        "line_matches0": torch.tensor([1, 1]),
    }
    bench = MegaDepth1500Pipeline({"eval": {"progress": False}})
    rec = record([1, 1], None, num_lines=(2, 2))
    rec.gt_line_matches0 = bench.line_ground_truth(data, pred)
    assert rec.gt_line_matches0.tolist() == [1, 0]
    out = M.line_match_metrics(rec)
    assert out["line_prec"] == 0.5 and out["line_rec"] == 0.5


def test_point_line_estimator_gets_the_matched_segments():
    rng = np.random.default_rng(0)
    kp0 = torch.from_numpy(rng.uniform(20, 380, (12, 2)))
    kp1 = warp_points(kp0, H)
    kp1[:4] += torch.from_numpy(rng.uniform(30, 60, (4, 2)))  # outliers
    lines0 = segments(20, seed=2)
    rec = PairRecord(
        name="p",
        kpts0=kp0,
        kpts1=kp1,
        scores=torch.ones(12, dtype=torch.float64),
        num_keypoints=(12, 12),
        image_size0=(400.0, 400.0),
        image_size1=(400.0, 400.0),
        H_0to1=H,
        lines0=lines0,
        lines1=warped(lines0, H),
        line_scores=torch.ones(20, dtype=torch.float64),
        line_matches=torch.stack([torch.arange(20)] * 2, -1),
        num_lines=(20, 20),
    )
    est = {"name": "point_line", "ransac_th": 1.0, "seed": 0}
    out = M.homography_robust_metrics(rec, est)
    assert out["H_error_ransac"] < 0.5
    assert math.isfinite(out["H_error_ransac_points"])
    assert out["ransac_line_inl"] == 20 and out["ransac_line_inl%"] == 1.0
    points_only = M.homography_robust_metrics(rec, {**est, "name": "opencv"})
    assert "H_error_ransac_points" not in points_only  # opencv takes no lines


# --------------------------------------------------------------------------------------
# Figures


def test_line_match_colours_and_drawing(tmp_path):
    rec = record([2, 1, 0, -1], [2, 3, -2, -1])
    colors = line_colors(rec)
    from matplotlib.colors import to_rgba

    assert [tuple(c) for c in colors] == [
        to_rgba(viz2d.CORRECT),
        to_rgba(viz2d.WRONG),
        to_rgba(viz2d.NEUTRAL),
    ]
    assert line_title(rec) == "; 3 line matches, 50% correct"
    fig, axes = viz2d.plot_images([np.zeros((400, 400))] * 2)
    conn = viz2d.plot_line_matches(fig, axes, rec.lines0, rec.lines1, colors)
    assert len(conn.get_segments()) == 3
    assert len(axes[0].collections[-1].get_segments()) == 3
    viz2d.save(fig, tmp_path / "lines.png")
    assert (tmp_path / "lines.png").stat().st_size > 0


# --------------------------------------------------------------------------------------
# End to end on one built-in sequence (5 pairs, small images)


@pytest.mark.slow
def test_hpatches_with_lines_end_to_end(tmp_path, monkeypatch):
    pytest.importorskip("gluefactory.datasets.sources.builtin_hpatches")
    from gluefactory.datasets.sources.builtin import ensure_builtin
    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.results import read_results

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    src = ensure_builtin("hpatches") / "v_astronaut"
    shutil.copytree(src, tmp_path / "hp" / "v_astronaut")
    summaries, out = run_benchmark(
        HPatchesPipeline,
        [
            "--conf",
            "aliked+lsd+NN",
            f"data.data_dir={tmp_path / 'hp'}",
            "data.preprocessing.resize=240",
            "model.extractor.point_extractor.max_num_keypoints=256",
            "model.extractor.line_extractor.max_num_lines=60",
            "eval.estimator=point_line",
            "eval.ransac_th=2.0",
            "eval.progress=false",
            "eval.num_worst=2",
            "eval.workers=1",
        ],
    )
    for key in ("median_num_lines", "median_line_prec", "median_line_rec"):
        assert math.isfinite(summaries[key]), key
    assert summaries["median_num_line_matches"] > 5
    assert summaries["median_line_prec"] > 0.5  # mild viewpoint change, NN on ALIKED
    assert {"H_error_ransac_points_mAA", "H_error_ransac_mAA"} <= set(summaries)
    res = read_results(out / "results.h5")
    assert len(res["line_prec"]) == 5
    with PredictionReader(out / "predictions.h5") as r:
        pair = r.read(res["names"][0])
    assert {"lines0", "orig_lines0", "line_matches0"} <= set(pair)
    # original pixels: the astronaut images are larger than 240 px
    assert pair["lines0"].max() > 240
    assert (out / "worst_pairs.png").exists()
