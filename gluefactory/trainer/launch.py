"""Start a training run: the experiment folder, the config, processes, restore."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from .. import settings
from ..utils.conf import ConfigError, to_conf
from ..utils.fs import atomic_write_text
from . import checkpoints as ckpts
from . import distributed
from .config import build_train_conf, saved_conf
from .logs import add_file_log, close_log

logger = logging.getLogger(__name__)


def experiment_folder(experiment: str) -> Path:
    if not experiment or experiment.strip() != experiment:
        raise ConfigError(f"Invalid experiment name {experiment!r}.")
    path = Path(experiment).expanduser()
    return path if path.is_absolute() else settings.training_root() / experiment


def _write_conf(conf: DictConfig, path: Path) -> None:
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(saved_conf(conf))))


def prepare(
    experiment: str, conf: Any, restore: bool = False, overwrite: bool = False
) -> tuple[DictConfig, Path]:
    """The full config of the run and its folder (created; ``config.yaml`` written).

    With ``restore`` the saved ``config.yaml`` is the base and ``conf`` overrides it.
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
    elif (
        main
        and folder.exists()
        and (ckpts.list_checkpoints(folder) or (folder / ckpts.BEST).exists())
    ):
        if not overwrite:
            raise ConfigError(
                f"Experiment {experiment} already exists in {folder}: resume it with "
                "--restore, pick another name, or pass --overwrite to start it again."
            )
        shutil.rmtree(folder)
    conf = build_train_conf(conf)
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        _write_conf(conf, folder / "config.yaml")
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
            trainer.load_state_dict(ckpt)
            logger.info(
                "Restored %s (epoch %d, step %d).",
                path.name,
                trainer.epoch,
                trainer.step,
            )
        elif conf.train.load_experiment:
            initialize_from(trainer.model, conf.train.load_experiment)
        return trainer.fit()
    finally:
        close_log(handler)
        if d.enabled:
            distributed.cleanup()


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
    conf, folder = prepare(experiment, conf, restore=restore, overwrite=overwrite)
    if distributed_run and not distributed.launched_by_torchrun():
        world = distributed.num_processes(conf.train.num_devices, conf.train.device)
        if world > 1:
            logger.info("Spawning %d processes.", world)
            return _spawn(world, conf, folder, restore)
    return run_worker(conf, folder, restore)
