"""The training loop: overfitting one batch, mixed precision, figures, benchmarks,
per-epoch dataset callbacks, logging to the experiment folder."""

from __future__ import annotations

import json

import pytest
import torch
from toy_training import toy_conf

from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import logs, train
from gluefactory.utils.errors import ConfigError


def records(folder, kind):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_overfit_one_batch_reaches_high_recall(outputs):
    conf = toy_conf(
        {"overfit": True, "eval_0": False, "max_steps": 50, "log_every_iter": 5},
        num_train=400,
    )
    res = train("overfit", conf)
    assert res["status"] == "max_steps" and res["step"] == 50
    train_logs = records(outputs / "overfit", "train")
    assert train_logs[-1]["loss/total"] < train_logs[0]["loss/total"] / 3
    assert (
        train_logs[-1]["match_recall"] > 0.95
        and train_logs[-1]["match_precision"] > 0.95
    )


def test_experiment_folder_contents(outputs):
    train("folder", toy_conf({"epochs": 1}, num_train=8))
    folder = outputs / "folder"
    names = {p.name for p in folder.iterdir()}
    assert {
        "config.yaml",
        "log.txt",
        "metrics.jsonl",
        "checkpoint_1_2.tar",
        "checkpoint_best.tar",
    } <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    log = (folder / "log.txt").read_text()
    assert "[Validation step 2 epoch 1]" in log and "Saved checkpoint_1_2.tar" in log
    from omegaconf import OmegaConf

    saved = OmegaConf.load(folder / "config.yaml")
    assert (
        saved.train.max_nonfinite_in_a_row == 10
    )  # the full config, defaults included
    x = [r["samples"] for r in records(folder, "train")]
    assert x == [4, 8]


def test_bfloat16_on_cpu_and_float16_needs_cuda(outputs):
    res = train(
        "bf16", toy_conf({"epochs": 1, "mixed_precision": "bfloat16"}, num_train=8)
    )
    assert res["status"] == "finished" and res["nonfinite"] == 0
    assert all(
        torch.isfinite(torch.tensor(r["loss/total"]))
        for r in records(outputs / "bf16", "train")
    )
    if not torch.cuda.is_available():
        with pytest.raises(
            ConfigError, match="float16 needs a CUDA device; use bfloat16"
        ):
            train("fp16", toy_conf({"mixed_precision": "float16"}, num_train=8))


def test_match_figures_go_to_tensorboard(outputs, monkeypatch):
    drawn = []
    monkeypatch.setattr(
        logs.Board, "figure", lambda self, tag, fig, x: drawn.append((tag, x))
    )
    train("figs", toy_conf({"epochs": 1, "plot": 1, "eval_0": False}, num_train=8))
    assert drawn == [("figures/val_0/match_0", 8), ("figures/val_0/match_1", 8)]
    fig = logs.match_figures(
        {
            "matches0": torch.tensor([[1, -1]]),
            "keypoints0": torch.rand(1, 2, 2) * 10,
            "keypoints1": torch.rand(1, 2, 2) * 10,
            "gt_matches0": torch.tensor([[1, 0]]),
        },
        {
            "view0": {"image_size": torch.tensor([[12.0, 10.0]])},
            "view1": {"image_size": torch.tensor([[12.0, 10.0]])},
        },
    )
    assert list(fig) == ["match_0"]


def test_benchmarks_each_epoch_and_dataset_callback(outputs):
    import toy_training

    toy_training.CALLBACKS.clear()
    conf = toy_conf(
        {
            "epochs": 2,
            "run_benchmarks": True,
            "eval_0": False,
            "dataset_callback_fn": "sample_new_items",
            "dataset_callback_on_val": True,
        },
        num_train=8,
    )
    conf["benchmarks"] = {
        "toy_training": {
            "data": {"num_pairs": 2},
            "model": {"matcher": {"filter_threshold": 0.3}},
        }
    }
    train("bench", conf)
    tests = records(outputs / "bench", "test")
    assert [r["epoch"] for r in tests] == [1, 2]
    assert (
        tests[0]["toy_training/num_pairs"] == 2
        and 0 <= tests[0]["toy_training/match_recall"] <= 1
    )
    assert tests[0]["toy_training/filter_threshold"] == 0.3  # benchmark model options
    assert (
        outputs / "bench" / "benchmarks" / "epoch_1" / "toy_training" / "summary.txt"
    ).exists()
    assert toy_training.CALLBACKS == [
        ("train", 3),
        ("val", 3),
        ("train", 4),
        ("val", 4),
    ]


def test_bad_callback_and_existing_experiment(outputs):
    with pytest.raises(ConfigError, match="_Items has no such method"):
        train("cb", toy_conf({"dataset_callback_fn": "resample"}, num_train=8))
    train("twice", toy_conf({"eval_0": False}, num_train=4))
    with pytest.raises(ConfigError, match="already exists.*--restore.*--overwrite"):
        train("twice", toy_conf({}, num_train=4))
    res = train("twice", toy_conf({"eval_0": False}, num_train=8), overwrite=True)
    assert res["step"] == 2 and len(ckpts.list_checkpoints(outputs / "twice")) == 1


def test_detect_anomaly_lists_parameters_without_gradient(outputs, caplog):
    from toy_training import lightglue_pipeline

    conf = toy_conf(
        {"detect_anomaly": True, "eval_0": False, "max_steps": 1}, num_train=8
    )
    conf["model"] = lightglue_pipeline()
    caplog.set_level("INFO")
    try:
        train("anomaly", conf)
    finally:
        torch.autograd.set_detect_anomaly(False)
    # every LightGlue parameter is trained through the loss: nothing is listed
    assert "Parameters without gradient" not in caplog.text


def test_accumulation_equals_the_large_batch(outputs):
    """Batch 2 x accumulate 2 takes the same steps as batch 4 (loss scaled by 1/2)."""
    big = train(
        "big", toy_conf({"epochs": 2, "eval_0": False}, num_train=16, batch_size=4)
    )
    small = train(
        "small",
        toy_conf(
            {"epochs": 2, "eval_0": False, "accumulate": 2}, num_train=16, batch_size=2
        ),
    )
    assert big["step"] == small["step"] == 8
    a, b = ckpts.load(big["checkpoint"]), ckpts.load(small["checkpoint"])
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], atol=2e-5, rtol=1e-4)
    assert a["counters"]["samples"] == b["counters"]["samples"] == 32
    la, lb = records(outputs / "big", "train"), records(outputs / "small", "train")
    assert [r["loss/total"] for r in la] == pytest.approx(
        [r["loss/total"] for r in lb], rel=1e-4
    )


def test_compile_wraps_the_training_module(outputs, monkeypatch):
    """--compile hands the model (with its loss) to torch.compile with the given mode
    (a real compilation takes minutes on a CPU: the wiring is tested here)."""
    calls = []

    def fake_compile(module, mode=None):
        calls.append((type(module).__name__, type(module.model).__name__, mode))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    train(
        "compiled",
        toy_conf({"compile": "reduce-overhead", "eval_0": False}, num_train=4),
    )
    train("compiled2", toy_conf({"compile": True, "eval_0": False}, num_train=4))
    assert calls == [
        ("WithLoss", "TwoViewPipeline", "reduce-overhead"),
        ("WithLoss", "TwoViewPipeline", None),
    ]


def test_worker_processes_give_the_same_run(outputs):
    """Items are loaded under per-item seeds: num_workers does not change the run."""
    a = train("w0", toy_conf({"epochs": 2, "eval_0": False}, num_train=8))
    b = train(
        "w2", toy_conf({"epochs": 2, "eval_0": False}, num_train=8, num_workers=2)
    )
    sa, sb = ckpts.load(a["checkpoint"]), ckpts.load(b["checkpoint"])
    for k in sa["model"]:
        torch.testing.assert_close(sa["model"][k], sb["model"][k], atol=1e-6, rtol=1e-5)
    lines = (outputs / "w2" / "metrics.jsonl").read_text()
    assert "NaN" not in lines and "Infinity" not in lines


def test_max_minutes_ends_the_run_near_the_budget(outputs, monkeypatch):
    """Validations of 20 s (a fake clock) and a 1-minute budget: the run stops when the
    final validation would overrun, so everything fits in the minute (it used to
    run to step 5, its fourth validation ending at 80 s)."""
    from gluefactory.trainer import control, loop

    offset, real = [0.0], control.time.monotonic
    monkeypatch.setattr(control.time, "monotonic", lambda: real() + offset[0])
    evaluate = loop.evaluate

    def slow_evaluate(*args, **kwargs):
        offset[0] += 20.0
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", slow_evaluate)
    conf = toy_conf(
        {"epochs": 100, "max_minutes": 1.0, "eval_every_iter": 2}, num_train=400
    )
    res = train("budget", conf)
    # validations at steps 0 and 2 (40 s), then 40 s + the 20 s reserve reach the
    # budget at step 3: its final validation ends at 60 s plus the real compute
    assert res["status"] == "time" and res["step"] == 3
    assert offset[0] == 60.0


def test_a_stop_on_a_validation_step_validates_once(outputs):
    conf = toy_conf(
        {"epochs": 100, "max_steps": 4, "eval_every_iter": 2}, num_train=400
    )
    res = train("stop_on_val", conf)
    assert res["status"] == "max_steps" and res["step"] == 4
    assert [r["step"] for r in records(outputs / "stop_on_val", "val")] == [0, 2, 4]
