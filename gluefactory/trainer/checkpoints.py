"""Checkpoints of an experiment: atomic writes, the last K kept, the best one, restore.

Files in the experiment folder: ``checkpoint_<epoch>_<step>.tar`` (``step`` = optimizer
steps done in all) and ``checkpoint_best.tar``. A checkpoint is written to a temporary
file in the same folder and moved in place with ``os.replace``, so a crash mid-write
leaves the previous files intact. Contents are plain tensors and Python values (loaded
with ``weights_only=True``): the model, optimizer, scheduler and scaler states, every
RNG state, the counters of the loop and the resolved config.
"""

from __future__ import annotations

import logging
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.errors import DataError

logger = logging.getLogger(__name__)

PATTERN = re.compile(r"checkpoint_(\d+)_(\d+)\.tar$")
BEST = "checkpoint_best.tar"


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """Regular checkpoints of ``folder``, oldest first (by step, then epoch)."""
    found = []
    for p in Path(folder).glob("checkpoint_*_*.tar"):
        m = PATTERN.match(p.name)
        if m:
            found.append(((int(m.group(2)), int(m.group(1))), p))
    return [p for _, p in sorted(found)]


def checkpoint_path(folder: Path, epoch: int, step: int) -> Path:
    return Path(folder) / f"checkpoint_{epoch}_{step}.tar"


def prune(folder: Path, keep: int | None) -> None:
    """Delete all but the ``keep`` most recent regular checkpoints."""
    if keep is None:
        return
    for p in list_checkpoints(folder)[:-keep]:
        p.unlink(missing_ok=True)


def load(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint; an unreadable file raises DataError naming it."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise DataError(
            f"Checkpoint {path} is corrupt or unreadable ({type(e).__name__}: {e})."
        ) from e
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise DataError(f"Checkpoint {path} is not a gluefactory training checkpoint.")
    return ckpt


def load_latest(folder: Path, map_location="cpu") -> tuple[dict, Path]:
    """The most recent readable checkpoint of ``folder``; corrupt ones are skipped with
    a warning naming them. Falls back to ``checkpoint_best.tar`` last."""
    candidates = list_checkpoints(folder)[::-1]
    if (Path(folder) / BEST).exists():
        candidates.append(Path(folder) / BEST)
    if not candidates:
        raise DataError(
            f"No checkpoint in {folder} (expected checkpoint_<epoch>_<step>.tar)."
        )
    for i, path in enumerate(candidates):
        try:
            return load(path, map_location), path
        except DataError as e:
            nxt = candidates[i + 1].name if i + 1 < len(candidates) else None
            logger.warning(
                "%s %s",
                e,
                f"Falling back to {nxt}." if nxt else "No other checkpoint left.",
            )
    raise DataError(
        f"No readable checkpoint in {folder}: all of {', '.join(p.name for p in candidates)} are corrupt."
    )


# ----------------------------------------------------------------------------- RNG


def rng_state() -> dict:
    """Every RNG the loop uses: python, numpy, torch CPU and CUDA (all devices)."""
    np_state = np.random.get_state()
    state = {
        "python": _python_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state() -> dict:
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": torch.tensor(internal), "gauss": gauss}


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # seeds CUDA too
