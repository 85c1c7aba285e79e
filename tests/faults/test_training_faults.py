"""Training under faults: a full disk is one message and exit 2 with nothing partial
left; a run SIGKILLed at random points restores to the weights of an uninterrupted run."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
from fault_injection import disk_full_at, leftovers
from omegaconf import OmegaConf
from test_resume import assert_same_weights, final_state
from toy_training import toy_conf
from trainer_env import subprocess_env

from gluefactory.train import main as train_main
from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import train


def test_disk_full_at_a_checkpoint_is_one_message_and_keeps_the_last_one(
    outputs, monkeypatch, capsys
):
    conf = toy_conf({"epochs": 2, "eval_0": False}, num_train=16)
    train("exp", conf)  # epoch checkpoints of a first run
    before = sorted(p.name for p in ckpts.list_checkpoints(outputs / "exp"))
    refused = disk_full_at(monkeypatch, "checkpoint_*.tar")
    with pytest.raises(SystemExit) as e:
        train_main(["exp", "--restore", "train.epochs=3"])  # epoch 3's checkpoint fails
    assert e.value.code == 2 and refused
    err = capsys.readouterr().err
    assert "error: " in err and "no space left on the device" in err
    assert "Traceback" not in err
    assert leftovers(outputs) == []
    monkeypatch.undo()
    # what was written before the fault is intact and loads
    assert sorted(p.name for p in ckpts.list_checkpoints(outputs / "exp")) == before
    assert ckpts.load_latest(outputs / "exp")[0]["counters"]["epoch"] == 2


def test_disk_full_at_the_config_writes_nothing(outputs, monkeypatch, capsys):
    disk_full_at(monkeypatch, "config.yaml")
    with pytest.raises(SystemExit) as e:
        train_main(
            ["exp", "--conf", "xfeat+lighterglue_homography", "data.data_dir=photos"]
        )
    assert e.value.code == 2
    assert "config.yaml: no space left" in capsys.readouterr().err
    assert leftovers(outputs.parent) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_a_random_point_then_restore_equals_uninterrupted(
    outputs, tmp_path, seed
):
    conf = toy_conf(
        {"epochs": 3, "eval_0": False, "save_every_iter": 1, "eval_every_iter": 2},
        num_train=16,
    )
    ref = train("reference", conf)
    path = tmp_path / "conf.yaml"
    OmegaConf.save(OmegaConf.create(conf), path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gluefactory.train",
            "killed",
            "--conf",
            str(path),
            "data.item_delay=0.05",
        ],
        env=subprocess_env(outputs.parent),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    folder = outputs / "killed"
    deadline = time.time() + 300
    while time.time() < deadline and not ckpts.list_checkpoints(folder):
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))  # anywhere: mid-step, mid-write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    stopped = ckpts.load_latest(folder)[0]["counters"]["step"]
    assert 1 <= stopped <= ref["step"]
    res = train("killed", {"data": {"item_delay": 0.0}}, restore=True)
    assert res["step"] == ref["step"]
    assert_same_weights(
        final_state(outputs / "reference")["model"], final_state(folder)["model"]
    )
    steps = [
        r["step"]
        for r in map(
            __import__("json").loads,
            (folder / "metrics.jsonl").read_text().splitlines(),
        )
        if r["kind"] == "train"
    ]
    assert steps == sorted(set(steps))  # nothing logged twice
