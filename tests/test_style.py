"""The tree stays as `ruff` wants it (lint rules and formatting of pyproject.toml), so
that a diff shows changes of substance only."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ["gluefactory", "gluefactory_nonfree", "benchmarks", "tests", "examples"]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is a dev dependency")
@pytest.mark.parametrize("command", [["check"], ["format", "--check"]])
def test_ruff(command):
    proc = subprocess.run(
        ["ruff", *command, *FOLDERS], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
