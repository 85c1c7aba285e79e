"""Restoring a run killed mid-epoch ends with the weights of an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from toy_training import toy_conf

from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import step as step_module
from gluefactory.trainer import train


def final_state(folder) -> dict:
    return ckpts.load(ckpts.list_checkpoints(folder)[-1])


def assert_same_weights(a: dict, b: dict, atol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-5, msg=k)


class Crash(RuntimeError):
    pass


def crash_at(monkeypatch, at_step: int):
    """Make the optimizer step number ``at_step`` raise (a process killed there)."""
    original = step_module.Stepper.optimizer_step

    def patched(self, step):
        if step == at_step:
            raise Crash(f"killed at step {step}")
        return original(self, step)

    monkeypatch.setattr(step_module.Stepper, "optimizer_step", patched)


@pytest.mark.parametrize(
    "accumulate,epochs,save_every,kill_at,restored_from",
    [(1, 3, 3, 10, 9), (2, 3, 5, 5, 5)],
    ids=["plain", "accumulate2"],
)
def test_killed_mid_epoch_and_restored_matches_uninterrupted(
    outputs, monkeypatch, accumulate, epochs, save_every, kill_at, restored_from
):
    train_conf = {
        "epochs": epochs,
        "accumulate": accumulate,
        "save_every_iter": save_every,
        "eval_every_iter": 4,  # validation in between must not change the result
        "optimizer": "adamw",
        "lr_schedule": {"type": "cosine", "warmup": 2},
    }
    conf = toy_conf(train_conf, num_train=16)  # 4 batches per epoch
    ref = train("reference", conf)
    assert ref["status"] == "finished"

    with monkeypatch.context() as m, pytest.raises(Crash):
        crash_at(m, kill_at)
        train("killed", conf)
    state = ckpts.load_latest(outputs / "killed")[0]
    assert state["counters"]["step"] == restored_from
    assert 0 < state["counters"]["batch_in_epoch"] < 4  # mid-epoch
    assert state["counters"]["batch_in_epoch"] % accumulate == 0

    res = train("killed", {}, restore=True)
    assert res["status"] == "finished" and res["step"] == ref["step"]
    assert_same_weights(
        final_state(outputs / "reference")["model"],
        final_state(outputs / "killed")["model"],
    )
    a, b = final_state(outputs / "reference"), final_state(outputs / "killed")
    assert a["lr_scheduler"]["last_epoch"] == b["lr_scheduler"]["last_epoch"]
    assert a["eval"]["loss/total"] == pytest.approx(b["eval"]["loss/total"], rel=1e-5)


def test_corrupt_checkpoint_falls_back_to_previous(outputs, caplog):
    conf = toy_conf({"epochs": 1, "save_every_iter": 2, "eval_0": False}, num_train=24)
    train("corrupt", conf)  # checkpoints at steps 2, 4, 6 (end)
    files = ckpts.list_checkpoints(outputs / "corrupt")
    assert [ckpts.PATTERN.match(p.name).group(2) for p in files] == ["2", "4", "6"]
    files[-1].write_bytes(files[-1].read_bytes()[:1000])  # truncated: a crash mid-copy
    caplog.set_level("INFO")
    res = train("corrupt", {}, restore=True)
    text = caplog.text
    assert f"Checkpoint {files[-1]} is corrupt" in text
    assert "Falling back to checkpoint_0_4.tar" in text
    assert "Restored checkpoint_0_4.tar" in text
    assert res["step"] == 6


def test_all_checkpoints_corrupt_is_a_clear_error(outputs):
    from gluefactory.utils.errors import DataError

    conf = toy_conf({"epochs": 1, "eval_0": False}, num_train=8)
    train("broken", conf)
    for p in (outputs / "broken").glob("checkpoint_*.tar"):
        p.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="No readable checkpoint in .*broken"):
        train("broken", {}, restore=True)


def test_restore_without_experiment_is_a_config_error(outputs):
    from gluefactory.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="has no .*config.yaml"):
        train("never_ran", {}, restore=True)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_sigint_in_process_saves_at_the_step_boundary_and_resumes(
    outputs, monkeypatch, signame
):
    import os
    import signal

    conf = toy_conf({"epochs": 2, "accumulate": 2, "eval_0": False}, num_train=16)
    ref = train("reference", conf)
    original = step_module.Stepper.optimizer_step

    def interrupt(self, step):
        if step == 2:
            os.kill(os.getpid(), getattr(signal, signame))  # mid-step
        return original(self, step)

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as m:
        m.setattr(step_module.Stepper, "optimizer_step", interrupt)
        res = train("sigint", conf)
    assert res["status"] == "interrupted" and res["step"] == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    state = ckpts.load(res["checkpoint"])
    assert state["counters"]["batch_in_epoch"] == 2  # mid-epoch, at a step boundary
    res = train("sigint", {}, restore=True)
    assert res["step"] == ref["step"]
    assert_same_weights(
        final_state(outputs / "reference")["model"],
        final_state(outputs / "sigint")["model"],
    )
