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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..experiments import BEST, PATTERN, list_checkpoints, load, load_latest
from ..utils.fs import atomic_path

__all__ = [
    "BEST",
    "PATTERN",
    "atomic_save",
    "checkpoint_path",
    "list_checkpoints",
    "load",
    "load_latest",
    "prune",
    "rng_state",
    "set_rng_state",
    "seed_everything",
]

logger = logging.getLogger(__name__)


def atomic_save(obj: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, synced to disk, then moved
    in place (:func:`gluefactory.utils.fs.atomic_path`)."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    return path


def checkpoint_path(folder: Path, epoch: int, step: int) -> Path:
    return Path(folder) / f"checkpoint_{epoch}_{step}.tar"


def prune(folder: Path, keep: int | None) -> None:
    """Delete all but the ``keep`` most recent regular checkpoints."""
    if keep is None:
        return
    for p in list_checkpoints(folder)[:-keep]:
        p.unlink(missing_ok=True)


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
