"""Trainer tests: the toy module is importable as ``toy_training`` (also by child
processes, through PYTHONPATH), and every run writes under a temporary outputs root."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
