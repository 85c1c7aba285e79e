"""When a run stops: SIGINT or SIGTERM (e.g. a cluster's preemption; first: stop after
the step with a checkpoint; second: at once), max_steps, max_minutes; the decision is
agreed by every rank.

``max_minutes`` is the wall time of the whole run: the clock starts when the trainer is
built (data sets, model), and a step stops the run when the time so far plus
``reserve`` (the duration of the latest validation and its checkpoint, which the stop
repeats) would exceed it, so the run ends near ``max_minutes``, not one validation
after it."""

from __future__ import annotations

import logging
import signal
import threading
import time

from . import distributed

logger = logging.getLogger(__name__)


REASONS = (None, "max_steps", "time", "interrupted")
#: a second signal within this many seconds is the first one delivered twice (a spawned
#: worker gets a terminal's Ctrl-C directly and forwarded by its launcher)
SAME_SIGNAL_S = 1.0


class StopControl:
    def __init__(self, conf, dist: distributed.Dist):
        self.conf, self.dist = conf, dist
        self.sigint = False
        self._first_signal = 0.0
        self.start = time.monotonic()  # the budget counts from the set-up
        self.reserve = 0.0  # seconds kept for the final validation and checkpoint
        self._previous: dict = {}

    def elapsed(self) -> float:
        """Seconds since this control (the trainer) was built."""
        return time.monotonic() - self.start

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False

    def _handler(self, signum, frame):
        now = time.monotonic()
        if self.sigint:
            if now - self._first_signal < SAME_SIGNAL_S:
                return  # the same Ctrl-C: from the terminal and forwarded by the launcher
            raise KeyboardInterrupt
        self.sigint, self._first_signal = True, now
        logger.warning(
            "%s: saving a checkpoint after this step (send it again to exit at once).",
            signal.Signals(signum).name,
        )

    def check(self, step: int) -> str | None:
        """None, or why to stop now: interrupted, max_steps or time (a collective)."""
        t, stop = self.conf, None
        if self.sigint:
            stop = "interrupted"
        elif t.max_steps is not None and step >= t.max_steps:
            stop = "max_steps"
        elif (
            t.max_minutes is not None
            and self.elapsed() + self.reserve > 60 * t.max_minutes
        ):
            stop = "time"
        if self.dist.enabled:  # every rank stops, for the most pressing reason of any
            code = distributed.max_int(REASONS.index(stop), self.dist)
            stop = REASONS[code]
        return stop
