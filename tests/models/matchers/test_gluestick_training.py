"""GlueStick trained through the command line on real photographs (the shipped recipe
``xfeat+lsd+gluestick-photos``, shrunk): one batch learnt by heart with ``--overfit``,
and a checkpoint trained here evaluated with ``--checkpoint`` (docs/lines.md)."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from gluefactory import settings
from gluefactory.train import main as train_main

CONF = "xfeat+lsd+gluestick-photos"
#: the recipe at a test's size: 64 points, 32 lines, 240 x 180 patches, one pair a batch
TINY = [
    "model.extractor.point_extractor.max_num_keypoints=64",
    "model.extractor.line_extractor.max_num_lines=32",
    "data.homography.patch_shape=[240,180]",
    "data_val.homography.patch_shape=[240,180]",
    "data.batch_size=1",
    "data_val.batch_size=1",
    "data_val.items_per_image=1",
    "train.eval_every_iter=1000",
    "train.save_every_iter=1000",
]


def train_records(experiment: str) -> list[dict]:
    path = settings.training_root() / experiment / "metrics.jsonl"
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [r for r in recs if r["kind"] == "train"]


@pytest.mark.slow
def test_overfit_one_real_batch_reaches_line_recall_above_0_9(tmp_path, monkeypatch):
    """``python -m gluefactory.train EXP --conf xfeat+lsd+gluestick-photos --overfit``:
    the line recall of the repeated batch (its ground truth from the homography) ends
    above 0.9."""
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    res = train_main(["overfit", "--conf", CONF, "--overfit", "--no_eval_0", *TINY,
                      "train.max_steps=80", "train.log_every_iter=5", "train.lr=3e-3",
                      "train.lr_schedule.type=constant"])  # fmt: skip
    assert res["step"] == 80
    recs = train_records("overfit")
    assert recs[-1]["line_match_recall"] > 0.9
    assert recs[-1]["line_match_precision"] > 0.9
    assert (
        recs[-1]["loss/line_num_matchable"] >= 5
    )  # real lines, not a degenerate batch


@pytest.mark.slow
def test_checkpoint_trained_here_evaluates_with_checkpoint(tmp_path, monkeypatch):
    """A few steps of the recipe, then ``gluefactory.eval.hpatches --conf
    xfeat+lsd+gluestick --checkpoint EXP`` (one built-in sequence) reports point and line
    metrics, and ``benchmarks.learning_lines report`` its table and curves."""
    pytest.importorskip("gluefactory.datasets.sources.builtin_hpatches")
    from benchmarks import learning_lines
    from gluefactory.datasets.sources.builtin import ensure_builtin
    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.hpatches import HPatchesPipeline
    from gluefactory.experiments import load_experiment

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    res = train_main(["tiny", "--conf", CONF, "--no_eval_0", *TINY,
                      "train.max_steps=3", "train.save_every_iter=3"])  # fmt: skip
    assert res["step"] == 3
    matcher = load_experiment("tiny").matcher
    assert matcher.conf.descriptor_dim == 96 and len(matcher.conf.GNN_layers) == 6

    shutil.copytree(
        ensure_builtin("hpatches") / "v_coffee", tmp_path / "hp" / "v_coffee"
    )
    summaries, out = run_benchmark(
        HPatchesPipeline,
        ["--conf", "xfeat+lsd+gluestick", "--checkpoint", "tiny",
         f"data.data_dir={tmp_path / 'hp'}", "data.preprocessing.resize=240",
         "model.extractor.point_extractor.max_num_keypoints=128",
         "model.extractor.line_extractor.max_num_lines=40", "eval.ransac_th=2.0",
         "eval.progress=false", "eval.num_worst=0", "eval.workers=1"],
    )  # fmt: skip
    assert "tiny" in out.name
    for key in ("mprec@3px", "mnum_keypoints", "median_num_lines",
                "median_num_line_matches", "H_error_ransac_mAA"):  # fmt: skip
        assert key in summaries and math.isfinite(summaries[key]), key

    figures = tmp_path / "figures"
    text = learning_lines.report("tiny", figures, items=1, filters=[0.05])
    rows = [x for x in text.splitlines() if x.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == [
        "| untrained GlueStick", "| trained GlueStick", "| trained GlueStick, filter 0.05",
        "| line NN (mutual)"]  # fmt: skip
    results = json.loads((figures / "learning_lines_results.json").read_text())
    nn = results["results"]["line NN (mutual)"]
    assert nn["num_pairs"] == 4 and nn["mean_line_rec"] > 0.2  # real lines matched
    assert (figures / "learning_lines_curves.png").stat().st_size > 0
