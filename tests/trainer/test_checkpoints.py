"""Atomic checkpoint writes, pruning, the best checkpoint by key and direction."""

from __future__ import annotations

import pytest
import torch
from toy_training import toy_conf

from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import train


def test_a_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint_0_1.tar"
    ckpts.atomic_save({"model": {"w": torch.ones(3)}}, path)

    def dying_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpts.atomic_save({"model": {"w": torch.zeros(3)}}, path)
    monkeypatch.undo()
    assert torch.equal(ckpts.load(path)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_keep_last_and_best_by_key_and_direction(outputs):
    conf = toy_conf(
        {
            "epochs": 2,
            "save_every_iter": 1,
            "eval_every_iter": 1,
            "keep_last_checkpoints": 3,
            "best_key": "match_recall",
            "best_mode": "max",
        },
        num_train=12,
    )
    res = train("best", conf)
    folder = outputs / "best"
    assert [p.name for p in ckpts.list_checkpoints(folder)] == [
        "checkpoint_1_4.tar",
        "checkpoint_1_5.tar",
        "checkpoint_2_6.tar",
    ]
    best = ckpts.load(folder / ckpts.BEST)
    import json

    vals = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    recalls = {v["step"]: v["match_recall"] for v in vals if v["kind"] == "val"}
    top = max(recalls, key=lambda s: (recalls[s], -s))
    assert best["counters"]["step"] == top
    assert best["best"] == pytest.approx(recalls[top])
    assert res["checkpoint"].name == "checkpoint_2_6.tar"


def test_unknown_best_key_lists_the_available_ones(outputs):
    from gluefactory.utils.errors import ConfigError

    with pytest.raises(
        ConfigError,
        match="train.best_key='recall' is not a validation value; available: .*match_recall",
    ):
        train("badkey", toy_conf({"best_key": "recall"}, num_train=8))
