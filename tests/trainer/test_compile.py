"""``--compile`` for real: torch.compile (inductor on the CPU) trains the same run as eager.

Opt-in (``GLUEFACTORY_TEST_COMPILE=1``): inductor compiles for minutes on a 2-core CPU,
beyond the default suite's budget; the wiring is tested in ``test_loop.py``.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from toy_training import toy_conf

from gluefactory.trainer import train


def losses(folder) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["loss/total"] for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("GLUEFACTORY_TEST_COMPILE") != "1",
    reason="opt-in: GLUEFACTORY_TEST_COMPILE=1 (a real inductor compile takes minutes)",
)
@pytest.mark.skipif(shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compiled_training_matches_eager(outputs):
    base = {"epochs": 1, "eval_0": False, "log_every_iter": 1}
    eager = train("eager", toy_conf(base, num_train=8))
    compiled = train("compiled", toy_conf({**base, "compile": True}, num_train=8))
    assert compiled["status"] == eager["status"] == "finished"
    a, b = losses(outputs / "eager"), losses(outputs / "compiled")
    assert len(a) == len(b) == 2
    assert b == pytest.approx(a, rel=1e-3, abs=1e-4)
    torch._dynamo.reset()
