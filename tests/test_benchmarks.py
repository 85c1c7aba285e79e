"""The benchmark scripts that check results before timing them run and print their
table (timings themselves are not asserted: they belong to docs/benchmarks.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_hot_paths_check_equality_and_print_every_row(capsys):
    """Every row's old and new computation agree (asserted inside), and the loss
    without dense log-assignments peaks at less memory than the dense one."""
    _module("hot_paths").main(["--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:2] == "| "]
    rows = rows[1:]  # the header
    assert len(rows) == 7, rows
    memory = next(r for r in rows if "peak memory" in r)
    before, now = (float(x) for x in memory.split("|")[2:4])
    assert now < 0.7 * before, memory


@pytest.mark.slow
def test_deploy_onnx_checks_matches_and_prints_every_row(capsys):
    """ONNX against PyTorch: matches agree (asserted inside) before the timing rows."""
    pytest.importorskip("onnxruntime")
    _module("deploy_onnx").main(["--keypoints", "256", "--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:2] == "| "]
    assert len(rows) == 4, rows  # header, full, adaptive, the extractor's CNN
