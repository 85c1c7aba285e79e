"""Environment of trainer CLI subprocesses (a plain module: ``conftest`` names clash
across test folders, so tests import this by its own name; tests/trainer is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def subprocess_env(outputs_root: Path) -> dict:
    """Environment of a CLI subprocess: this tree first, the toy module importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), str(HERE), env.get("PYTHONPATH", "")]
    )
    env["GLUEFACTORY_OUTPUTS"] = str(outputs_root)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env
