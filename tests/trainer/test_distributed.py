"""Process-group helpers that need no process group (DDP itself: test_subprocess.py)."""

from __future__ import annotations

from gluefactory.trainer import distributed


def test_ranks_share_the_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(distributed, "cpu_cores", lambda: 16)
    assert distributed.threads_per_process(1) == 16
    assert distributed.threads_per_process(4) == 4
    assert distributed.threads_per_process(3) == 5
    assert distributed.threads_per_process(32) == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's (or torchrun's) choice wins
    assert distributed.threads_per_process(4) == 3


def test_cpu_cores_is_positive():
    assert distributed.cpu_cores() >= 1
