"""Training experiments on disk: find them, read their checkpoints and config, rebuild
their model.

This sits above ``models`` and ``datasets`` and below ``eval`` (``--checkpoint``) and
the trainer (which writes what is read here; ``trainer/checkpoints.py``).

An experiment is a folder ``<outputs>/training/<name>/`` (see :func:`gluefactory.settings.training_root`)
holding ``config.yaml`` and ``checkpoint_<epoch>_<step>.tar`` files (plus ``checkpoint_best.tar``).
Functions here take an experiment *name* (a folder under the training root), a folder
path, or the path of one checkpoint file.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from . import settings
from .utils.conf import ConfigError, merge_strict, to_conf
from .utils.errors import DataError

logger = logging.getLogger(__name__)

PATTERN = re.compile(r"checkpoint_(\d+)_(\d+)\.tar$")
BEST = "checkpoint_best.tar"


def list_checkpoints(folder: Path) -> list[Path]:
    """Regular checkpoints of ``folder``, oldest first (by step, then epoch)."""
    found = []
    for p in Path(folder).glob("checkpoint_*_*.tar"):
        m = PATTERN.match(p.name)
        if m:
            found.append(((int(m.group(2)), int(m.group(1))), p))
    return [p for _, p in sorted(found)]


def _is_torch_archive(path: Path) -> bool:
    """Whether ``path`` starts like a zip archive, the format of ``torch.save`` (a
    truncated checkpoint still does: it is then reported as corrupt)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except (IsADirectoryError, FileNotFoundError):
        return True  # torch.load reports it, naming the path


def load(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint; an unreadable file raises DataError naming it. A file that
    is not a ``torch.save`` archive at all (a config, a log) is said to be so, rather
    than answered with PyTorch's advice about ``weights_only``."""
    if not _is_torch_archive(path):
        raise DataError(
            f"{path} is not a checkpoint: not a PyTorch (torch.save) archive. Give a "
            "checkpoint_<epoch>_<step>.tar file or an experiment name."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise DataError(
            f"Checkpoint {path} is corrupt or unreadable ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})."
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


def experiment_dir(name_or_path: str | Path) -> Path:
    """The folder of an experiment given by name (under the training root) or path."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    candidate = settings.training_root() / str(name_or_path)
    if candidate.is_dir():
        return candidate
    root = settings.training_root()
    known = (
        sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    )
    raise ConfigError(
        f"No experiment '{name_or_path}' in {root} (nor a folder or checkpoint at that "
        f"path). Known experiments: {', '.join(known) or '(none)'}."
    )


def checkpoint_file(name_or_path: str | Path, which: str = "last") -> Path:
    """The checkpoint file that ``load_experiment`` reads, found without reading it:
    the file itself, the experiment's ``checkpoint_best.tar``, or its newest regular
    checkpoint (``load_experiment`` falls back to an older one only if that is corrupt).
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    folder = experiment_dir(name_or_path)
    if which not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {which!r}.")
    regular = list_checkpoints(folder)
    if which == "last" and regular:
        return regular[-1]
    if not (folder / BEST).exists():
        raise DataError(
            f"Experiment {folder} has no checkpoint (expected "
            f"checkpoint_<epoch>_<step>.tar or {BEST})."
        )
    return folder / BEST


def _checkpoint(name_or_path: str | Path, which: str = "last") -> tuple[dict, Path]:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return load(path), path
    folder = experiment_dir(name_or_path)
    if which == "best":
        best = folder / BEST
        if not best.exists():
            raise DataError(f"Experiment {folder} has no {BEST}.")
        return load(best), best
    if which != "last":
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {which!r}.")
    return load_latest(folder)


def experiment_conf(name_or_path: str | Path) -> DictConfig:
    """The full training config of an experiment (its ``config.yaml``, or the config
    stored in a checkpoint file)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        ckpt, _ = _checkpoint(path)
        if not isinstance(ckpt.get("conf"), dict):
            raise DataError(f"Checkpoint {path} holds no training config ('conf').")
        return OmegaConf.create(ckpt["conf"])
    folder = experiment_dir(name_or_path)
    file = folder / "config.yaml"
    if not file.exists():
        raise DataError(f"Experiment {folder} has no config.yaml.")
    return OmegaConf.load(file)


def load_experiment(
    name_or_path: str | Path, conf: Any = None, checkpoint: str = "last"
):
    """Rebuild the model of an experiment with its trained weights, in eval mode.

    ``conf`` overrides the saved ``model`` config (e.g. ``{"matcher": {"depth_confidence": 0.95}}``);
    the weights must fit the resulting model exactly. ``checkpoint``: ``last`` (the most
    recent readable checkpoint) or ``best``; ignored when a checkpoint file is given.
    """
    from .models import get_model
    from .models.base_model import load_state_dict_strict

    ckpt, path = _checkpoint(name_or_path, checkpoint)
    model_conf = OmegaConf.create(ckpt["conf"]["model"])
    if conf is not None:
        model_conf = merge_strict(
            model_conf, to_conf(conf), component="the experiment's model", strict=False
        )
    model = get_model(model_conf.name)(model_conf)
    load_state_dict_strict(model, ckpt["model"], source=str(path))
    logger.info("Loaded %s (step %s).", path, ckpt.get("counters", {}).get("step"))
    return model.eval()
