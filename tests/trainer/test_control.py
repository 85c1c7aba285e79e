"""Stop decisions of :mod:`gluefactory.trainer.control` (signals end to end:
test_subprocess.py)."""

from __future__ import annotations

import signal

import pytest
from omegaconf import OmegaConf

from gluefactory.trainer import control
from gluefactory.trainer.distributed import Dist


def _control():
    conf = OmegaConf.create({"max_steps": None, "max_minutes": None})
    return control.StopControl(conf, Dist())


def test_first_signal_stops_after_the_step_second_at_once(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(control.time, "monotonic", lambda: clock[0])
    c = _control()
    assert c.check(1) is None
    c._handler(signal.SIGTERM, None)
    assert c.check(2) == "interrupted"
    clock[0] += 0.01  # the same Ctrl-C, from the terminal and from the launcher
    c._handler(signal.SIGINT, None)
    clock[0] += control.SAME_SIGNAL_S
    with pytest.raises(KeyboardInterrupt):  # a real second signal
        c._handler(signal.SIGINT, None)


def test_time_and_step_limits(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(control.time, "monotonic", lambda: clock[0])
    conf = OmegaConf.create({"max_steps": 5, "max_minutes": 1.0})
    c = control.StopControl(conf, Dist())
    assert c.check(4) is None and c.check(5) == "max_steps"
    clock[0] = 61.0
    assert c.check(1) == "time"


def test_the_budget_counts_the_set_up_and_keeps_a_validation_in_reserve(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(control.time, "monotonic", lambda: clock[0])
    conf = OmegaConf.create({"max_steps": None, "max_minutes": 1.0})
    c = control.StopControl(conf, Dist())  # built with the trainer
    clock[0] = 30.0  # data sets and model built: the loop starts
    with c:
        c.reserve = 10.0  # the latest validation (and its checkpoint) took 10 s
        clock[0] = 49.0
        assert c.check(1) is None
        clock[0] = 51.0  # 51 + 10 > 60: the final validation would overrun
        assert c.check(2) == "time"
