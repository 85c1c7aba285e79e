"""Process groups for DDP: ``torchrun`` (env vars) or ``--distributed`` (spawn here).

- ``torchrun`` sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; each
  process joins with ``init_method="env://"`` (multi-node works the same way).
- ``--distributed`` on one machine spawns ``train.num_devices`` processes (default: the
  visible GPUs) that rendezvous on a free local TCP port; each gets its share of the
  CPU cores as intra-op threads (``OMP_NUM_THREADS`` overrides).

NCCL on GPUs, gloo on CPU. Rank 0 alone writes logs, checkpoints and figures.

How a rank ends (:func:`leave`, :func:`exit_rank`): on success the ranks wait for each
other, the process group is destroyed, logs are flushed, and the process exits with
``os._exit``, *without* interpreter finalization. The reason is a race in PyTorch: the
C++ side of a ``DistributedDataParallel`` model keeps its process group alive after
``destroy_process_group``, so gloo's worker threads outlive it, and a worker that
releases the tensors of a finished collective needs the GIL. If that happens while
``Py_Finalize`` runs, CPython ends the thread inside a ``noexcept`` destructor and the
rank dies with ``terminate called without an active exception`` (SIGABRT), after its
work was done: about one run in three of the two-rank tests failed that way.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn

import torch
import torch.distributed as dist

from ..utils.conf import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str | None, local_rank: int = 0) -> torch.device:
    if requested in (None, "auto"):
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device=cuda but no CUDA device is available.")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if requested == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"train.device must be null, cpu or cuda, got {requested!r}.")


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init(requested_device: str | None) -> Dist:
    """Join the process group described by the environment (torchrun or our spawn)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    device = pick_device(requested_device, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world
        )
    return Dist(rank, world, local, device)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def leave(d: Dist, finished: bool) -> None:
    """Leave the process group: after a normal end, wait until every rank got there
    (no rank tears down a connection a peer still uses); then destroy it."""
    if d.enabled and finished and dist.is_initialized():
        dist.barrier()
    cleanup()


def exit_rank(code: int) -> NoReturn:
    """End a rank process at once, skipping interpreter finalization (module docstring:
    gloo threads may outlive the process group). Everything a rank writes is closed or
    flushed by then; this flushes logging and the standard streams last."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def num_processes(num_devices: int | None, device: str | None) -> int:
    """Processes for ``--distributed``: ``train.num_devices`` or the visible GPUs."""
    if num_devices is not None:
        if int(num_devices) < 1:
            raise ConfigError(f"train.num_devices must be >= 1, got {num_devices}.")
        return int(num_devices)
    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.device_count()
    raise ConfigError(
        "--distributed without GPUs needs train.num_devices (CPU processes, gloo)."
    )


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_process(world: int) -> int:
    """Intra-op threads of each of ``world`` local ranks: the cores split between them,
    unless ``OMP_NUM_THREADS`` says otherwise (as torchrun sets it)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, cpu_cores() // world)


def _child(local_rank: int, world: int, port: int, fn, args) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # each child would otherwise start one thread per core: with 2 ranks on 2 cores,
    # 4 busy threads (docs/training.md: 1 thread each made 8 % more steps)
    torch.set_num_threads(threads_per_process(world))
    fn(*args)  # an exception goes to torch's spawn wrapper, which reports it
    exit_rank(0)


def spawn(world: int, fn, args: tuple, on_signal=None) -> None:
    """Run ``fn(*args)`` in ``world`` local processes that form one process group.

    SIGINT and SIGTERM received here are forwarded to the workers (each saves a
    checkpoint and stops; see :mod:`.control`), after ``on_signal(signum)``: a
    ``kill <pid>`` of this launcher alone used to leave them training. A Ctrl-C in a
    terminal reaches them twice (from the terminal and from here): they count it once.
    """
    import signal

    import torch.multiprocessing as mp

    ctx = mp.start_processes(
        _child,
        args=(world, free_port(), fn, args),
        nprocs=world,
        join=False,
        start_method="spawn",
    )

    def forward(signum, frame):
        if on_signal is not None:
            on_signal(signum)
        for proc in ctx.processes:
            if proc.is_alive():
                os.kill(proc.pid, signum)

    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        while not ctx.join():
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -------------------------------------------------------------------- collectives


def any_true(flag: bool, d: Dist) -> bool:
    """True on every rank if ``flag`` is True on any rank."""
    if not d.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_int(value: int, d: Dist) -> int:
    """The largest ``value`` over the ranks."""
    if not d.enabled:
        return int(value)
    t = torch.tensor([int(value)], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_sum(values: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        values = values.to(d.device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def gather_objects(obj, d: Dist) -> list:
    if not d.enabled:
        return [obj]
    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out
