"""Fixtures of the evaluation tests: tiny datasets of real photos, isolated output roots."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # eval_toy_* dataset modules, by name


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Outputs and data roots in a temporary folder."""
    monkeypatch.setenv("GLUEFACTORY_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv("GLUEFACTORY_DATA", str(tmp_path / "data"))
    return tmp_path
