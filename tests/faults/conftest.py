"""Fault injection: ``fault_injection`` and the trainer's toy data are importable."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "trainer"):  # fault_injection; toy_training
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
