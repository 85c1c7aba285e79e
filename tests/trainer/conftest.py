"""Trainer tests: the toy module is importable as ``toy_training`` (also by child
processes, through PYTHONPATH), and every run writes under a temporary outputs root."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


@pytest.fixture
def outputs(tmp_path, monkeypatch):
    """A fresh ``GLUEFACTORY_OUTPUTS``; returns the training root."""
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    return tmp_path / "outputs" / "training"


def subprocess_env(outputs_root: Path) -> dict:
    """Environment of a CLI subprocess: this tree first, the toy module importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(HERE), env.get("PYTHONPATH", "")]
    )
    env["GLUEFACTORY_OUTPUTS"] = str(outputs_root)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
