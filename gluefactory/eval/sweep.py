"""Robust estimation over pairs and RANSAC thresholds, in parallel worker processes.

``eval.ransac_th`` is a float (one run), a list (a sweep) or a value <= 0 (the sweep
{0.5, 1.0, 1.5, 2.0, 2.5, 3.0} px). Each (threshold, chunk of pairs) is one job; a
worker builds the estimator of a threshold once (cached per process) and reuses it for
every pair it gets, so no estimator is ever built per pair. Workers are forked from a
clean fork server (see :func:`_context`). Estimators that use a
random generator seed it themselves per call (``seed`` option), so results do not depend
on how pairs are spread over workers.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm import tqdm

from ..robust_estimators import load_estimator
from ..utils.errors import ConfigError

#: thresholds swept when ``eval.ransac_th`` <= 0 (px), as upstream
SWEEP_THRESHOLDS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)

#: below this many (pair, threshold) jobs the estimation runs in this process: starting
#: workers (a few seconds) would cost more than it saves
MIN_PARALLEL_JOBS = 64

# per-process cache: (kind, estimator conf as JSON) -> estimator
_ESTIMATORS: dict[tuple[str, str], Any] = {}


def thresholds_from(value: Any) -> list[float]:
    """The thresholds meant by ``eval.ransac_th`` (float, list, or <= 0 for the sweep)."""
    if isinstance(value, Mapping):
        raise ConfigError(
            f"eval.ransac_th must be a number, a list or -1 (sweep), got {dict(value)!r}."
        )
    if (
        isinstance(value, (list, tuple))
        or hasattr(value, "__iter__")
        and not isinstance(value, str)
    ):
        try:
            ths = [float(v) for v in value]
        except (TypeError, ValueError):
            ths = []
        if not ths or any(not (t > 0 and math.isfinite(t)) for t in ths):
            raise ConfigError(
                f"eval.ransac_th as a list must hold positive thresholds, got {list(value)}."
            )
        return ths
    try:
        th = float(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"eval.ransac_th must be a number, a list or -1 (sweep), got {value!r}."
        ) from e
    if not math.isfinite(th):
        raise ConfigError(f"eval.ransac_th must be finite, got {value!r}.")
    return list(SWEEP_THRESHOLDS) if th <= 0 else [th]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _estimator(kind: str, conf_json: str):
    key = (kind, conf_json)
    est = _ESTIMATORS.get(key)
    if est is None:
        est = _ESTIMATORS[key] = load_estimator(kind, json.loads(conf_json))
    return est


#: imported once by the fork server, so that workers start without importing them
PRELOAD = [
    "gluefactory.eval.metrics",
    "gluefactory.robust_estimators.homography.poselib",
    "gluefactory.robust_estimators.homography.opencv",
    "gluefactory.robust_estimators.relative_pose.poselib",
    "gluefactory.robust_estimators.relative_pose.opencv",
]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    _ESTIMATORS.clear()


def _context():
    """Workers come from a fork server (a clean single-threaded process): forking the
    main process itself can deadlock in libraries that hold thread pools (OpenCV)."""
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


def workers_for(n_pairs: int, n_thresholds: int, workers: int | None) -> int:
    """Processes the estimation will use (1: in this process, see MIN_PARALLEL_JOBS)."""
    workers = default_workers() if workers is None else int(workers)
    if workers <= 1 or n_pairs * n_thresholds < MIN_PARALLEL_JOBS:
        return 1
    return workers


class PoolStarter:
    """Starts the worker pool in a background thread, so that the fork server's start
    (it imports torch: seconds) overlaps the caller's work (the per-pair metrics loop).
    """

    def __init__(self, workers: int):
        self.workers = workers
        self._executor = ThreadPoolExecutor(1)
        self._future = self._executor.submit(
            lambda: _context().Pool(workers, initializer=_init_worker)
        )

    def get(self):
        return self._future.result()

    def close(self) -> None:
        try:
            pool = self._future.result()
        except Exception:  # the pool never started: nothing to close
            pool = None
        if pool is not None:
            pool.terminate()
            pool.join()
        self._executor.shutdown()


def _run_job(job: tuple) -> tuple[float, list[tuple[int, dict]]]:
    kind, conf_json, fn, th, items = job
    est = _estimator(kind, conf_json)
    return th, [(idx, fn(inputs, est)) for idx, inputs in items]


def run_sweep(
    kind: str,
    estimator_conf: Callable[[float], dict],
    thresholds: Sequence[float],
    inputs: Sequence[Any],
    fn: Callable[[Any, Any], dict],
    workers: int | None = None,
    progress: bool = True,
    pool: PoolStarter | None = None,
) -> tuple[dict[float, list[dict]], float, int]:
    """Run ``fn(inputs[i], estimator)`` for every pair and threshold (``inputs``: the
    pairs' :class:`~gluefactory.eval.records.PairRecord`, sent to the workers as is).

    ``estimator_conf(th)`` is the full estimator config of a threshold; ``fn`` must be
    picklable (a module-level function). Returns ({threshold: [result per pair]},
    seconds, number of processes used). ``pool``: workers started beforehand (then
    used whatever the number of jobs; the caller closes it).
    """
    t0 = time.perf_counter()
    n = len(inputs)
    workers = (
        pool.workers if pool is not None else workers_for(n, len(thresholds), workers)
    )
    njobs_target = max(1, 4 * workers)
    chunk = max(1, math.ceil(n * len(thresholds) / njobs_target))
    jobs = []
    for th in thresholds:
        conf_json = json.dumps(estimator_conf(th), sort_keys=True)
        for s in range(0, n, chunk):
            items = [(i, inputs[i]) for i in range(s, min(n, s + chunk))]
            jobs.append((kind, conf_json, fn, th, items))
    out: dict[float, list] = {th: [None] * n for th in thresholds}
    bar = tqdm(
        total=n * len(thresholds),
        desc=f"robust estimation ({len(thresholds)} threshold(s))",
        disable=not progress,
        leave=False,
    )

    def collect(th, results):
        for idx, res in results:
            out[th][idx] = res
        bar.update(len(results))

    try:
        if pool is not None:
            for th, results in pool.get().imap_unordered(_run_job, jobs):
                collect(th, results)
        elif workers <= 1 or len(jobs) <= 1:
            workers = 1
            _ESTIMATORS.clear()
            for job in jobs:
                collect(*_run_job(job))
            _ESTIMATORS.clear()
        else:
            ctx = _context()
            with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker) as p:
                for th, results in p.imap_unordered(_run_job, jobs):
                    collect(th, results)
    finally:
        bar.close()
    return out, time.perf_counter() - t0, workers
