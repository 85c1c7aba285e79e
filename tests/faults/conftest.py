"""Fault injection: ``fault_injection``, the trainer's toy data, the evaluation's toy
datasets and the download test server are importable."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# fault_injection; toy_training; eval_toy_*; test_download (server)
for folder in (
    HERE,
    HERE.parent / "trainer",
    HERE.parent / "eval",
    HERE.parent / "datasets",
):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
