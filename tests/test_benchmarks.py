"""The benchmark scripts that check results before timing them run and print their
table (timings themselves are not asserted: they belong to docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from benchmarks import hot_paths


@pytest.mark.slow
def test_hot_paths_check_equality_and_print_every_row(capsys):
    """Every row's old and new computation agree (asserted inside), and the loss
    without dense log-assignments peaks at less memory than the dense one."""
    hot_paths.main(["--repeats", "1"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line[:2] == "| "]
    rows = rows[1:]  # the header
    assert len(rows) == 7, rows
    memory = next(r for r in rows if "peak memory" in r)
    before, now = (float(x) for x in memory.split("|")[2:4])
    assert now < 0.7 * before, memory
