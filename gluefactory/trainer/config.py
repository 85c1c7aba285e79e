"""The training configuration: top-level sections and the ``train.*`` defaults.

A training config has ``data`` (a dataset, validated by it), ``model`` (a model,
validated by it), ``train`` (validated here, strictly: an unknown key is an error with
the closest valid key), optional ``data_val`` (a separate validation dataset) and
``benchmarks`` (``name: conf`` of benchmarks run with ``--run_benchmarks``).
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..utils.cli import merge_cli_conf
from ..utils.conf import ConfigError, to_conf

#: every ``train.*`` key with its default (documented in docs/training.md)
DEFAULT_TRAIN_CONF: dict[str, Any] = {
    "seed": 0,
    "epochs": 1,
    "max_steps": None,  # stop after this many optimizer steps in all (None: epochs)
    "max_minutes": None,  # stop (with a checkpoint) after this wall time
    "optimizer": "adam",  # adam | adamw | sgd | any torch.optim class name
    "optimizer_options": {},  # passed to the optimizer (betas, weight_decay, ...)
    "lr": 1e-4,
    "lr_schedule": {
        "type": None,  # None|constant|exp|step|factor|cosine|<torch scheduler name>
        "on_epoch": False,  # step the schedule per epoch instead of per optimizer step
        "start": 0,  # exp/step/factor: first epoch/step that decays
        "exp_div_10": 0,  # exp: x10^(-1/exp_div_10) per unit after start
        "step_size": 1,  # step: decay by gamma every step_size units
        "gamma": 0.1,  # step: decay factor
        "factor": 1.0,  # factor: lr x factor once t >= start
        "warmup": 0,  # linear warmup over this many units (any built-in type)
        "min_lr_factor": 0.0,  # cosine: final lr / lr
        "options": {},  # a torch scheduler's keyword arguments
    },
    "opt_regexp": None,  # train only parameters whose name matches this regex
    "clip_grad": None,  # max gradient norm (None: no clipping)
    "accumulate": 1,  # micro-batches per optimizer step (effective batch = batch x this)
    "max_nonfinite_in_a_row": 10,  # abort after this many skipped steps in a row
    "mixed_precision": None,  # None | float16 | bfloat16 (also --mixed_precision)
    "compile": False,  # torch.compile the model (also --compile)
    "device": None,  # None: cuda if available, else cpu
    "num_devices": None,  # --distributed: processes to spawn (None: all GPUs)
    "ddp_find_unused_parameters": False,
    "log_every_iter": 100,
    "log_it": False,  # TensorBoard x-axis: optimizer steps instead of samples
    "eval_every_iter": 1000,  # validate every this many steps (and at each epoch end)
    "eval_0": True,  # validate before the first step (--no_eval_0 turns it off)
    "save_every_iter": 5000,  # checkpoint every this many steps (and at epoch ends)
    "keep_last_checkpoints": 10,
    "best_key": "loss/total",  # validation value that selects checkpoint_best
    "best_mode": "min",  # min | max
    "plot": 0,  # validation batches drawn as match figures (int, or [n, "dotted.fn"])
    "load_experiment": None,  # initialise the weights from this experiment
    "dataset_callback_fn": None,  # dataset method called with seed+epoch each epoch
    "dataset_callback_on_val": False,
    "overfit": False,  # repeat one batch (also --overfit)
    "run_benchmarks": False,  # run conf.benchmarks each epoch (also --run_benchmarks)
    "detect_anomaly": False,  # autograd anomaly detection (also --detect_anomaly)
}

TOP_LEVEL = {
    "data": {"name": None},
    "data_val": None,
    "model": {"name": None},
    "train": DEFAULT_TRAIN_CONF,
    "benchmarks": {},
}

#: sections validated by the component they configure
OPEN_KEYS = ("train.optimizer_options", "train.lr_schedule.options", "benchmarks")


def build_train_conf(conf: Any) -> DictConfig:
    """Merge ``conf`` over the defaults strictly and check the values; returns a copy."""
    conf = to_conf(conf)
    merged = merge_cli_conf(
        OmegaConf.create(TOP_LEVEL),
        conf,
        component="the training config",
        open_keys=OPEN_KEYS,
    )
    check_train_conf(merged)
    return merged


def check_train_conf(conf: DictConfig) -> None:
    """Values that are wrong whatever the model: a clear error naming the key."""
    t = conf.train
    if conf.data.get("name") is None:
        raise ConfigError("The training config needs data.name (a dataset).")
    if conf.model.get("name") is None:
        raise ConfigError(
            "The training config needs model.name (e.g. two_view_pipeline)."
        )

    def positive(key, value, allow_none=False):
        if value is None and allow_none:
            return
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(f"train.{key} must be a positive number, got {value!r}.")

    positive("epochs", t.epochs)
    positive("accumulate", t.accumulate)
    positive("max_steps", t.max_steps, allow_none=True)
    positive("max_minutes", t.max_minutes, allow_none=True)
    positive("clip_grad", t.clip_grad, allow_none=True)
    positive("max_nonfinite_in_a_row", t.max_nonfinite_in_a_row)
    for key in ("log_every_iter", "eval_every_iter", "save_every_iter"):
        positive(key, t[key])
    if not isinstance(t.accumulate, int):
        raise ConfigError(f"train.accumulate must be an integer, got {t.accumulate!r}.")
    if t.keep_last_checkpoints is not None and t.keep_last_checkpoints < 1:
        raise ConfigError(
            f"train.keep_last_checkpoints must be >= 1, got {t.keep_last_checkpoints}."
        )
    if t.best_mode not in ("min", "max"):
        raise ConfigError(
            f"train.best_mode must be 'min' or 'max', got {t.best_mode!r}."
        )
    if t.mixed_precision not in (None, "float16", "bfloat16"):
        raise ConfigError(
            "train.mixed_precision must be null, float16 or bfloat16, got "
            f"{t.mixed_precision!r}."
        )
    positive("lr", t.lr)


def saved_conf(conf: DictConfig) -> dict:
    """The config as written to ``config.yaml`` and checkpoints: resolved, without an
    unset ``data_val`` (so that readers of experiments see only the sections in use)."""
    plain = OmegaConf.to_container(conf, resolve=True)
    if plain.get("data_val") is None:
        plain.pop("data_val", None)
    return plain
