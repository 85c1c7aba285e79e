"""A non-finite loss or gradient skips the step, is counted, and aborts after N in a row."""

from __future__ import annotations

import json

import pytest
import torch
from toy_training import toy_conf

from gluefactory.trainer import TrainingDiverged, train
from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import step as step_module
from gluefactory.trainer.data import TrainBatches


def batches_with(item: int, n: int, bs: int, seed: int, epochs: int) -> int:
    s, count = TrainBatches(n, bs, seed), 0
    for e in range(epochs):
        s.set_epoch(e)
        count += sum(any(i == item for i, _ in b) for b in s)
    return count


def test_nan_loss_steps_are_skipped_and_counted(outputs, caplog):
    conf = toy_conf({"epochs": 2, "eval_0": False}, num_train=16, nan_items=[5])
    res = train("nanloss", conf)
    expected = batches_with(5, 16, 4, seed=3, epochs=2)
    assert expected == 2  # item 5 is in one batch per epoch
    assert res["status"] == "finished" and res["nonfinite"] == expected
    assert caplog.text.count("Non-finite loss at step") == expected
    state = ckpts.load(res["checkpoint"])
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    logged = [
        json.loads(x)
        for x in (outputs / "nanloss" / "metrics.jsonl").read_text().splitlines()
    ]
    assert logged[-2]["kind"] == "train" and logged[-2]["nonfinite_skipped"] == expected


def test_nan_gradients_abort_after_too_many_in_a_row(outputs, monkeypatch):
    original = step_module.WithLoss.forward

    def poisoned(self, data):  # finite loss, NaN gradients
        pred, losses, metrics = original(self, data)
        total = losses["total"]
        total.register_hook(lambda g: g * float("nan"))
        return pred, {**losses, "total": total}, metrics

    monkeypatch.setattr(step_module.WithLoss, "forward", poisoned)
    conf = toy_conf(
        {"epochs": 3, "eval_0": False, "max_nonfinite_in_a_row": 3}, num_train=16
    )
    with pytest.raises(
        TrainingDiverged,
        match=r"3 steps in a row had a non-finite gradient.*Lower train.lr",
    ):
        train("nangrad", conf)
    assert not ckpts.list_checkpoints(outputs / "nangrad")


def test_a_finite_step_resets_the_count(outputs):
    # with items 0 and 1 NaN the 12 steps go .x.xx.x...xx: 6 bad, at most 2 in a row
    items, n, seed = [0, 1], 16, 3
    s, seq = TrainBatches(n, 4, seed), []
    for e in range(3):
        s.set_epoch(e)
        seq += [any(i in items for i, _ in b) for b in s]
    runs = "".join("x" if q else "." for q in seq).split(".")
    longest = max(len(r) for r in runs)
    assert longest == 2 and sum(seq) == 6
    conf = toy_conf(
        {"epochs": 3, "eval_0": False, "max_nonfinite_in_a_row": 3},
        num_train=n,
        nan_items=items,
    )
    res = train("reset", conf)
    assert res["status"] == "finished" and res["nonfinite"] == 6
    conf["train"]["max_nonfinite_in_a_row"] = 2
    with pytest.raises(
        TrainingDiverged, match="2 steps in a row had a non-finite loss"
    ):
        train("reset2", conf)
