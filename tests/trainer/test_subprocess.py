"""The training CLI in real processes: SIGINT mid-run, and DDP with two gloo processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf
from test_resume import assert_same_weights, final_state
from toy_training import toy_conf
from trainer_env import subprocess_env

from gluefactory.trainer import checkpoints as ckpts
from gluefactory.trainer import train
from gluefactory.trainer.distributed import threads_per_process


def records(folder, kind):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def cli(args, outputs_root, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "gluefactory.train", *args],
        env=subprocess_env(outputs_root),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def interrupt_mid_run(proc, metrics, sig, timeout=180) -> str:
    """Send ``sig`` to ``proc`` once it logged 2 metric records; its stderr after a
    clean interrupted exit (code 130, no traceback)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    return err


@pytest.mark.slow
def test_sigint_saves_and_restore_matches_uninterrupted(outputs, tmp_path):
    conf = toy_conf(
        {"epochs": 3, "eval_0": False, "save_every_iter": 1000}, num_train=16
    )
    ref = train("reference", conf)
    path = tmp_path / "conf.yaml"
    OmegaConf.save(OmegaConf.create(conf), path)
    proc = cli(["sig", "--conf", str(path), "data.item_delay=0.1"], outputs.parent)
    err = interrupt_mid_run(proc, outputs / "sig" / "metrics.jsonl", signal.SIGINT)
    assert "Interrupted: saved checkpoint_" in err
    state = ckpts.load_latest(outputs / "sig")[0]
    stopped = state["counters"]["step"]
    assert 2 <= stopped < ref["step"]
    res = train("sig", {"data": {"item_delay": 0.0}}, restore=True)
    assert res["status"] == "finished" and res["step"] == ref["step"]
    assert_same_weights(
        final_state(outputs / "reference")["model"],
        final_state(outputs / "sig")["model"],
    )


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["spawn", "torchrun"])
def test_two_gloo_processes_match_one_process(outputs, tmp_path, launcher):
    train_conf = {"epochs": 2, "eval_every_iter": 3, "accumulate": 2, "num_devices": 2}
    # item 5 has NaN descriptors: its steps are skipped by both ranks together
    conf = toy_conf(
        train_conf, num_train=16, num_val=7, val_batch_size=4, nan_items=[5]
    )
    ref = train("single", conf)
    path = tmp_path / "conf.yaml"
    OmegaConf.save(OmegaConf.create(conf), path)
    if launcher == "spawn":  # in this process: --distributed spawns the two ranks
        res = train("ddp", conf, distributed_run=True)
        assert res["status"] == "finished" and res["step"] == ref["step"]
        assert res["checkpoint"].exists()
    else:  # the CLI under torchrun (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_* set)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "gluefactory.train",
                "ddp",
                "--conf",
                str(path),
            ],
            env=subprocess_env(outputs.parent),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    log = (outputs / "ddp" / "log.txt").read_text()
    # the cores are split between the ranks (torchrun: OMP_NUM_THREADS)
    env_threads = int(subprocess_env(outputs.parent)["OMP_NUM_THREADS"])
    threads = threads_per_process(2) if launcher == "spawn" else env_threads
    assert f"Distributed: 2 processes, backend gloo, {threads} CPU threads each" in log
    one, two = records(outputs / "single", "train"), records(outputs / "ddp", "train")
    assert (
        [r["step"] for r in one]
        == [r["step"] for r in two]
        == list(range(1, ref["step"] + 1))
    )
    for a, b in zip(one, two):
        assert a["samples"] == b["samples"]
        assert b["loss/total"] == pytest.approx(a["loss/total"], rel=1e-4, abs=1e-5)
    # validation over the whole set (7 pairs, split 4 + 3) equals the single-process one
    va, vb = records(outputs / "single", "val"), records(outputs / "ddp", "val")
    assert [r["step"] for r in va] == [r["step"] for r in vb]
    for a, b in zip(va, vb):
        for k in ("loss/total", "match_recall", "match_precision"):
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-5), k
        assert b["loss/num_matchable"] == pytest.approx(a["loss/num_matchable"])
    sa, sb = final_state(outputs / "single"), final_state(outputs / "ddp")
    assert_same_weights(sa["model"], sb["model"], atol=1e-4)
    assert sb["counters"]["world_size"] == 2 and len(sb["rng"]) == 2
    assert sa["stepper"]["nonfinite_total"] == sb["stepper"]["nonfinite_total"] == 2


@pytest.mark.slow
def test_sigterm_to_the_launcher_stops_its_workers(outputs, tmp_path):
    """``kill <pid>`` of a ``--distributed`` launcher (not its process group): the
    ranks get the signal too, save and stop together; the restored run ends like an
    uninterrupted one."""
    train_conf = {"epochs": 3, "eval_0": False, "save_every_iter": 1000}
    conf = toy_conf({**train_conf, "num_devices": 2}, num_train=16)
    ref = train("reference", conf)
    path = tmp_path / "conf.yaml"
    OmegaConf.save(OmegaConf.create(conf), path)
    args = ["ddp-sig", "--conf", str(path), "--distributed", "data.item_delay=0.1"]
    proc = cli(args, outputs.parent)
    # the launcher alone, as `kill <pid>` does
    err = interrupt_mid_run(proc, outputs / "ddp-sig" / "metrics.jsonl", signal.SIGTERM)
    assert "SIGTERM: the workers save a checkpoint and stop" in err
    assert (
        "Interrupted: saved checkpoint_"
        in (outputs / "ddp-sig" / "log.txt").read_text()
    )
    stopped = ckpts.load_latest(outputs / "ddp-sig")[0]["counters"]["step"]
    assert 2 <= stopped < ref["step"]
    res = train(
        "ddp-sig", {"data": {"item_delay": 0.0}}, restore=True, distributed_run=True
    )
    assert res["status"] == "finished" and res["step"] == ref["step"]
    assert_same_weights(
        final_state(outputs / "reference")["model"],
        final_state(outputs / "ddp-sig")["model"],
        atol=1e-4,
    )
