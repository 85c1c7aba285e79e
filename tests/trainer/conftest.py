"""Trainer tests: the toy module is importable as ``toy_training`` (also by child
processes, through PYTHONPATH), and every run writes under a temporary outputs root."""

from __future__ import annotations

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
