"""What the benchmark scripts share: the host line, timing (min / median / max, CPU),
the photographs timed on, the record of a long run, markdown tables, a training step
timed part by part, and the peer runner.

The peer runner (:class:`Interpreter`) runs ``python peer_driver.py TARGET ARGS`` with
our interpreter or upstream glue-factory's venv and returns what the driver measured:
wall, CPU and model time, optimizer-step end times, peak memory and library versions
(see :mod:`benchmarks.peer_driver`).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from gluefactory.utils.errors import UserError

REPO = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("peer_driver.py")


# ------------------------------------------------------------------------------ host
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def host(threads: int | str) -> str:
    """One line: CPU, cores, threads, torch / OpenCV / Python versions, date."""
    import cv2
    import torch

    return (
        f"{cpu_name()} ({os.cpu_count()} cores), {threads} threads, torch "
        f"{torch.__version__}, OpenCV {cv2.__version__}, Python "
        f"{sys.version.split()[0]}, {date.today()}"
    )


def set_threads(threads: int) -> None:
    """Limit torch and OpenCV to ``threads`` threads."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


# ---------------------------------------------------------------------------- timing
@dataclass(frozen=True)
class Timing:
    """Seconds over repeated runs: wall-clock min / median / max, and the median CPU
    time of this process (all its threads; on a shared machine the steadier measure
    of the work)."""

    min: float
    median: float
    max: float
    cpu: float

    @classmethod
    def of(cls, wall: Sequence[float], cpu: Sequence[float]) -> Timing:
        return cls(
            min(wall), statistics.median(wall), max(wall), statistics.median(cpu)
        )


def time_alternately(
    fns: Mapping[str, Callable[[], object] | None],
    runs: int,
    sync: Callable[[], None] = lambda: None,
) -> dict[str, Timing | None]:
    """Time each function ``runs`` times after one warm-up call each, called in turn so
    that all see the same machine load; a ``None`` function gives ``None``."""
    live = {k: f for k, f in fns.items() if f is not None}
    wall: dict[str, list[float]] = {k: [] for k in live}
    cpu: dict[str, list[float]] = {k: [] for k in live}
    for f in live.values():
        f()
    for _ in range(runs):
        for k, f in live.items():
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            f()
            sync()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return {k: Timing.of(wall[k], cpu[k]) if k in live else None for k in fns}


def photo(name: str, size: str | None = None):
    """A scikit-image photograph as a (1, 3, H, W) float tensor in [0, 1] (``motorcycle``,
    ``motorcycle_right``: the Middlebury stereo pair), resized (area) to ``size``:
    ``WxH``, or the long side (aspect kept)."""
    import skimage.data

    from gluefactory.utils.image import numpy_image_to_torch, resize_image

    if name.startswith("motorcycle"):
        img = skimage.data.stereo_motorcycle()[name.endswith("right")]
    else:
        img = getattr(skimage.data, name)()
    x = numpy_image_to_torch(img)[:3].expand(3, -1, -1)[None]
    if size:
        h, w = x.shape[-2:]
        s = int(size) / max(h, w) if "x" not in size else None
        wh = size.split("x") if s is None else (round(w * s), round(h * s))
        x = resize_image(x, (int(wh[1]), int(wh[0])), "area").clamp(0, 1)
    return x


@contextlib.contextmanager
def recorded(path: Path, period: float = 30.0):
    """Record the enclosed run (a long training) into ``path`` (JSON) when it ends well:
    start (UTC), wall and CPU seconds (this process and its finished children, e.g. DDP
    ranks), the host, threads and the 1-minute load average sampled every ``period`` s
    (on a shared machine a 30-minute run can get much less compute). The caller adds its
    own keys to the yielded dict."""
    info, samples, stop = {}, [], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(round(os.getloadavg()[0], 2))
            stop.wait(period)

    def cpu() -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    import torch

    from gluefactory.utils.fs import atomic_write_text

    thread = threading.Thread(target=sample, daemon=True)
    t0, c0 = time.time(), cpu()
    thread.start()
    yield info
    stop.set()
    thread.join()
    info.update(started_utc=time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)),
                wall_s=round(time.time() - t0, 1), cpu_s=round(cpu() - c0, 1),
                cpu=f"{cpu_name()} ({os.cpu_count()} cores)",
                threads=torch.get_num_threads(), load_1min={
                    "min": min(samples), "max": max(samples),
                    "mean": round(sum(samples) / len(samples), 2), "samples": samples})  # fmt: skip
    atomic_write_text(path, json.dumps(info, indent=1))


# ---------------------------------------------------------------------------- output
def table(head: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def emit(text: str, output: str | Path | None) -> str:
    """Print ``text`` and, when asked, write it (atomically) to ``output``."""
    from gluefactory.utils.fs import atomic_write_text

    print(text, flush=True)
    if output:
        atomic_write_text(output, text.rstrip("\n") + "\n")
    return text


# ------------------------------------------------------------------------ peer runner
@dataclass(frozen=True)
class Interpreter:
    """A Python that runs benchmark targets under :mod:`benchmarks.peer_driver`: ours,
    or the venv of upstream glue-factory built by ``build_peer.sh`` (the peer)."""

    python: str
    cwd: Path
    env: dict

    @staticmethod
    def _env(threads: int) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEER_BENCH")}
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   PYTHONUNBUFFERED="1", TQDM_MININTERVAL="5")  # fmt: skip
        return env

    @classmethod
    def ours(cls, threads: int, outputs: Path, python: str = sys.executable):
        """This repository (ahead of ``$PYTHONPATH``), with ``threads`` threads, writing
        to ``outputs``."""
        from gluefactory import settings

        path = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        return cls(python, REPO, {**cls._env(threads), "PYTHONPATH": path,
                   "GLUEFACTORY_DATA": str(settings.data_root()),
                   "GLUEFACTORY_OUTPUTS": str(outputs)})  # fmt: skip

    @classmethod
    def peer(cls, threads: int, peer: Path):
        """Upstream's build in ``peer``: none of our variables shadow it."""
        python = peer / "venv" / "bin" / "python"
        if not python.exists():
            raise UserError(f"No peer build in {peer}: run build_peer.sh first.")
        env = {k: v for k, v in cls._env(threads).items()
               if not k.startswith("GLUEFACTORY_") and k != "PYTHONPATH"}  # fmt: skip
        env["TORCH_HOME"] = str(peer / "torch_home")
        return cls(str(python), peer / "glue-factory", env)

    def run(self, target: str, args: Sequence[object], mode: str, log: Path) -> dict:
        """Run ``target`` (a module, or a ``.py`` file) with ``args`` under the driver in
        ``mode`` (``eval``: model time; ``train``: step end times; ``plain``); returns
        the driver's measurements plus ``wall_s``, the process wall time seen from here.
        """
        out = log.with_suffix(".json")
        out.unlink(missing_ok=True)
        env = {**self.env, "PEER_BENCH_MODE": mode, "PEER_BENCH_OUT": str(out)}
        t0 = time.perf_counter()
        with open(log, "w") as f:
            code = subprocess.run([self.python, str(DRIVER), target, *map(str, args)],
                                  cwd=self.cwd, env=env, stdout=f,
                                  stderr=subprocess.STDOUT).returncode  # fmt: skip
        wall = time.perf_counter() - t0
        if code or not out.exists():
            tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-15:])
            raise RuntimeError(
                f"{self.python} {target} failed (exit {code}), log {log}:\n{tail}"
            )
        return {**json.loads(out.read_text()), "wall_s": wall}


# ------------------------------------------------------------------- training steps
STEP_PARTS = (
    "extract",
    "match forward",
    "ground truth",
    "loss",
    "backward",
    "optimizer",
)


def step_parts(model, data: dict, opt, cast=None) -> dict[str, float]:
    """One training step of a ``two_view_pipeline`` (frozen extractor), timed part by
    part (wall seconds, :data:`STEP_PARTS`); gradients clipped at 1 as in the
    trainer; ``cast``: an autocast context."""
    import contextlib

    import torch

    marks = [time.perf_counter()]
    with cast or contextlib.nullcontext():
        with torch.no_grad():
            pred = {f"{k}{i}": v for i in (0, 1)
                    for k, v in model.extract_view(data, i).items()}  # fmt: skip
        marks.append(time.perf_counter())
        pred = {**pred, **model.matcher({**data, **pred})}
        marks.append(time.perf_counter())
        pred = model._with_ground_truth(data, pred)
        marks.append(time.perf_counter())
        loss = model.matcher.loss(pred, {**pred, **data})[0]["total"].float().mean()
        marks.append(time.perf_counter())
    loss.backward()
    marks.append(time.perf_counter())
    params = [p for g in opt.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    marks.append(time.perf_counter())
    return {k: b - a for k, a, b in zip(STEP_PARTS, marks, marks[1:])}
