"""The training CLI: flags and overrides mixed freely; user errors as one message, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gluefactory.train import flags_to_conf, parser

TOY = Path(__file__).parent / "trainer"


def test_flags_and_dotlist_mix_freely():
    args = parser().parse_intermixed_args(
        [
            "exp",
            "train.lr=2e-4",
            "--conf",
            "c.yaml",
            "--mp",
            "bfloat16",
            "data.batch_size=8",
            "--overfit",
            "--no_eval_0",
            "--compile",
            "--log_it",
            "--run_benchmarks",
            "--da",
        ]
    )
    assert args.experiment == "exp" and args.conf == "c.yaml"
    assert args.dotlist == ["train.lr=2e-4", "data.batch_size=8"]
    assert flags_to_conf(args) == {
        "train": {
            "mixed_precision": "bfloat16",
            "compile": True,
            "overfit": True,
            "run_benchmarks": True,
            "detect_anomaly": True,
            "log_it": True,
            "eval_0": False,
        }
    }
    args = parser().parse_intermixed_args(
        ["exp", "--compile", "reduce-overhead", "--restore", "--distributed"]
    )
    assert args.compile == "reduce-overhead" and args.restore and args.distributed
    assert flags_to_conf(parser().parse_intermixed_args(["exp"])) == {}


def run_cli(*args, tmp_path):
    import os

    env = dict(os.environ, GLUEFACTORY_OUTPUTS=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[1]), str(TOY), env.get("PYTHONPATH", "")]
    )
    env.pop("GLUEFACTORY_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "gluefactory.train", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_config_typo_is_one_clear_error(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("data: {name: toy_training}\nmodel: {name: two_view_pipeline}\n")
    r = run_cli(
        "typo",
        "--conf",
        str(conf),
        "train.lrr=1e-3",
        "train.epochs=2",
        tmp_path=tmp_path,
    )
    assert r.returncode == 2
    assert r.stderr.startswith(
        "error: Unknown configuration key(s) for the training config"
    )
    assert "'train.lrr'. Did you mean 'lr'?" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "training" / "typo").exists()  # nothing written


def test_unknown_config_name_in_process(capsys, monkeypatch, tmp_path):
    from gluefactory.train import main

    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path))
    monkeypatch.delenv("GLUEFACTORY_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["exp", "--conf", "no_such_config"])
    assert e.value.code == 2
    assert "error: No config named or at 'no_such_config'" in capsys.readouterr().err
