"""Start a training run: the experiment folder, the config, processes, restore."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .. import settings
from ..utils.conf import ConfigError, to_conf
from ..utils.fs import atomic_write_text, file_lock
from . import checkpoints as ckpts
from . import distributed
from .config import build_train_conf, saved_conf
from .logs import add_file_log, close_log

logger = logging.getLogger(__name__)


def experiment_folder(experiment: str) -> Path:
    """The folder of ``experiment``: a name (or relative path) under the training
    root, or an absolute path; ``..`` is refused (it would write outside the root)."""
    if not experiment or experiment.strip() != experiment:
        raise ConfigError(f"Invalid experiment name {experiment!r}.")
    path = Path(experiment).expanduser()
    if ".." in path.parts:
        raise ConfigError(
            f"Invalid experiment name {experiment!r}: '..' is not allowed; give a "
            "name under the training root or an absolute path."
        )
    return path if path.is_absolute() else settings.training_root() / experiment


def write_conf(conf: DictConfig, folder: Path) -> None:
    """``config.yaml`` of an experiment (atomically)."""
    text = OmegaConf.to_yaml(OmegaConf.create(saved_conf(conf)))
    atomic_write_text(folder / "config.yaml", text)


def check_components(conf: DictConfig) -> None:
    """Build the configs of the datasets and the model (no data, no weights), so that a
    wrong key or value fails before anything is deleted or written."""
    from ..datasets import get_dataset
    from ..models import get_model

    get_dataset(conf.data.name).build_conf(conf.data)
    if conf.get("data_val") is not None:
        get_dataset(conf.data_val.name).build_conf(conf.data_val)
    get_model(conf.model.name).build_conf(conf.model)


def prepare(
    experiment: str, conf: Any, restore: bool = False, overwrite: bool = False
) -> tuple[DictConfig, Path]:
    """The full config of the run and its folder.

    Everything is checked first (the ``train`` section, the datasets' and the model's
    configs); only then is an existing experiment removed (``overwrite``) and
    ``config.yaml`` written. With ``restore`` the saved ``config.yaml`` is the base and
    ``conf`` overrides it; it is rewritten only once the checkpoint has been loaded
    (:func:`run_worker`), so a config that does not fit the checkpoint leaves the
    experiment as it was.
    """
    folder = experiment_folder(experiment)
    conf = to_conf(conf)
    main = int(os.environ.get("RANK", 0)) == 0
    if restore:
        saved = folder / "config.yaml"
        if not saved.exists():
            raise ConfigError(
                f"--restore: experiment {experiment} has no {saved}; start it without --restore."
            )
        conf = OmegaConf.merge(OmegaConf.load(saved), conf)
    conf = build_train_conf(conf)
    check_components(conf)
    if (
        not restore
        and main
        and folder.exists()
        and (ckpts.list_checkpoints(folder) or (folder / ckpts.BEST).exists())
    ):
        if not overwrite:
            raise ConfigError(
                f"Experiment {experiment} already exists in {folder}: resume it with "
                "--restore, pick another name, or pass --overwrite to start it again."
            )
        shutil.rmtree(folder)
    if main and not restore:
        folder.mkdir(parents=True, exist_ok=True)
        write_conf(conf, folder)
    return conf, folder


def initialize_from(model: torch.nn.Module, experiment: str) -> None:
    """``train.load_experiment``: copy the weights of another experiment's latest
    checkpoint into ``model``; shapes must agree; new and unused keys are reported."""
    from ..experiments import _checkpoint

    ckpt, path = _checkpoint(experiment)
    state, own = ckpt["model"], model.state_dict()
    bad = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(state) & set(own))
        if state[k].shape != own[k].shape
    ]
    if bad:
        raise ConfigError(
            f"train.load_experiment={experiment}: {path} does not fit the model: "
            + "; ".join(bad[:10])
            + (f" ... ({len(bad)} in all)" if len(bad) > 10 else "")
        )
    new = sorted(set(own) - set(state))
    unused = sorted(set(state) - set(own))
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    logger.info(
        "Initialised from %s: %d tensors loaded.", path, len(set(own) & set(state))
    )
    if new:
        logger.warning(
            "Keys new in this model (kept at their initial values): %s", ", ".join(new)
        )
    if unused:
        logger.warning(
            "Keys of the checkpoint not used by this model: %s", ", ".join(unused)
        )


def run_worker(conf: DictConfig | dict, folder: str | Path, restore: bool) -> dict:
    """Train in this process (one rank when RANK/WORLD_SIZE are set)."""
    from .loop import Trainer

    conf = OmegaConf.create(conf) if not isinstance(conf, DictConfig) else conf
    folder = Path(folder)
    if distributed.launched_by_torchrun():
        d = distributed.init(conf.train.device)
    else:
        d = distributed.Dist(device=distributed.pick_device(conf.train.device))
    handler = add_file_log(folder / "log.txt") if d.main else None
    if not d.main:
        logging.getLogger().setLevel(logging.WARNING)
    finished = False
    try:
        if conf.train.detect_anomaly:
            torch.autograd.set_detect_anomaly(True)
        if d.enabled and d.main:
            logger.info(
                "Distributed: %d processes, backend %s, %d CPU threads each.",
                d.world_size,
                torch.distributed.get_backend(),
                torch.get_num_threads(),
            )
        trainer = Trainer(conf, folder, d)
        if restore:
            ckpt, path = ckpts.load_latest(folder)
            try:
                trainer.load_state_dict(ckpt)
            except (RuntimeError, ValueError) as e:  # state-dict keys or shapes
                raise ConfigError(
                    f"--restore: {path} does not fit the model of this config (were "
                    f"model.* keys changed?): {str(e).splitlines()[0]}"
                ) from None
            if d.main:
                write_conf(conf, folder)
            logger.info(
                "Restored %s (epoch %d, step %d).",
                path.name,
                trainer.epoch,
                trainer.step,
            )
        elif conf.train.load_experiment:
            initialize_from(trainer.model, conf.train.load_experiment)
        summary = trainer.fit()
        finished = True
        return summary
    finally:
        if d.enabled:
            distributed.leave(d, finished)
        close_log(handler)


def _spawned(conf: dict, folder: str, restore: bool, results) -> None:
    summary = run_worker(conf, folder, restore)
    if int(os.environ["RANK"]) == 0:  # the parent returns rank 0's summary
        path = summary.get("checkpoint")
        results.put({**summary, "checkpoint": str(path) if path else None})


def _spawn(world: int, conf: DictConfig, folder: Path, restore: bool) -> dict | None:
    """Run ``world`` local ranks; SIGINT/SIGTERM reach them (they save and stop), the
    parent waits for them."""
    import signal

    import torch.multiprocessing as mp

    results = mp.get_context("spawn").SimpleQueue()

    def on_signal(signum):
        logger.warning(
            "%s: the workers save a checkpoint and stop.", signal.Signals(signum).name
        )

    distributed.spawn(
        world,
        _spawned,
        (OmegaConf.to_container(conf), str(folder), restore, results),
        on_signal=on_signal,
    )
    if results.empty():
        return None
    summary = results.get()
    if summary["checkpoint"]:
        summary["checkpoint"] = Path(summary["checkpoint"])
    return summary


def train(
    experiment: str,
    conf: Any,
    *,
    restore: bool = False,
    distributed_run: bool = False,
    overwrite: bool = False,
) -> dict | None:
    """Train ``experiment`` (a name under the training root) with ``conf``.

    ``distributed_run`` spawns ``train.num_devices`` processes here, unless this process
    is already one rank of a ``torchrun`` job. Returns the summary of rank 0 (None on
    the other ranks of a torchrun job).
    """
    folder = experiment_folder(experiment)
    main = int(os.environ.get("RANK", 0)) == 0
    lock = (
        file_lock(
            folder.parent / f".{folder.name}.lock",
            wait=False,
            what=f"Experiment {experiment}",
        )
        if main  # one writer per experiment: the launcher or rank 0 holds it
        else contextlib.nullcontext()
    )
    with lock:
        conf, folder = prepare(experiment, conf, restore=restore, overwrite=overwrite)
        if distributed_run and not distributed.launched_by_torchrun():
            world = distributed.num_processes(conf.train.num_devices, conf.train.device)
            if world > 1:
                logger.info("Spawning %d processes.", world)
                return _spawn(world, conf, folder, restore)
        return run_worker(conf, folder, restore)
