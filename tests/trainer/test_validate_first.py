"""Training validates the whole config before touching its folder (docs/errors.md)."""

from __future__ import annotations

import json

import pytest
from toy_training import toy_conf

from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import train
from gluefactory.utils.errors import ConfigError


@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("data", "batch_size", 0, "data.batch_size must be a positive integer, got 0"),
        ("data", "batch_size", -2, "data.batch_size must be a positive integer"),
        ("data", "val_batch_size", 1.5, "data.val_batch_size must be a positive"),
        ("data", "num_workers", -1, "data.num_workers must be an integer >= 0"),
        ("train", "lr", "abc", "train.lr must be a positive number, got 'abc'"),
        ("train", "lr", float("nan"), "train.lr must be a positive number, got nan"),
        ("train", "lr", float("inf"), "train.lr must be a positive number"),
        ("train", "epochs", 0, "train.epochs must be a positive number"),
    ],
)
def test_bad_values_fail_before_anything_is_written(
    outputs, section, key, value, message
):
    conf = toy_conf()
    conf[section][key] = value
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        train("bad", conf)
    assert not (outputs / "bad").exists()


def test_a_model_typo_fails_before_the_overwrite_deletes_anything(outputs):
    train("exp", toy_conf())
    before = sorted(p.name for p in (outputs / "exp").iterdir())
    conf = toy_conf()
    conf["model"]["matcher"]["n_layer"] = 3  # typo of n_layers
    with pytest.raises(ConfigError, match="n_layer"):
        train("exp", conf, overwrite=True)
    assert sorted(p.name for p in (outputs / "exp").iterdir()) == before


@pytest.mark.parametrize("name", ["../x", "a/../../x", ".."])
def test_experiment_names_stay_under_the_training_root(outputs, name):
    with pytest.raises(ConfigError, match="'..' is not allowed"):
        train(name, toy_conf())
    assert not (outputs.parent / "x").exists()


def test_restore_with_a_model_that_does_not_fit_keeps_the_experiment(outputs):
    train("exp", toy_conf())
    saved = (outputs / "exp" / "config.yaml").read_text()
    change = {"model": {"matcher": {"n_layers": 3}}}
    with pytest.raises(ConfigError, match="does not fit the model of this config"):
        train("exp", change, restore=True)
    assert (outputs / "exp" / "config.yaml").read_text() == saved
    assert train("exp", {}, restore=True)["status"] == "finished"


def test_restore_drops_the_records_it_redoes(outputs, monkeypatch):
    """Killed after step 5 with the last checkpoint at step 4: the restored run logs
    steps 5.. again; metrics.jsonl holds each step once."""
    from test_resume import Crash, crash_at

    conf = toy_conf({"epochs": 2, "save_every_iter": 4, "eval_0": False}, num_train=16)
    with monkeypatch.context() as m, pytest.raises(Crash):
        crash_at(m, 6)  # steps 1..6 logged (log_every_iter 1), checkpoint at 4
        train("exp", conf)
    assert ckpts.load_latest(outputs / "exp")[0]["counters"]["step"] == 4
    res = train("exp", {}, restore=True)
    records = [
        json.loads(line)
        for line in (outputs / "exp" / "metrics.jsonl").read_text().splitlines()
    ]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == list(range(1, res["step"] + 1))


def test_one_writer_per_experiment(outputs):
    from gluefactory.utils.errors import LockedError
    from gluefactory.utils.fs import file_lock

    with file_lock(outputs / ".exp.lock", wait=False):  # another run holds it
        with pytest.raises(LockedError, match="Experiment exp is in use by PID"):
            train("exp", toy_conf())
    assert not (outputs / "exp").exists()
