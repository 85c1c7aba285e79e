"""Deploy tests: helpers importable as ``deploy_helpers`` (small pipelines, random
features) and the trainer's toy data (``toy_training``) for checkpoint exports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent / "trainer"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

pytest.importorskip("onnxruntime")
