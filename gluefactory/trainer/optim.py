"""Optimizers and learning-rate schedules built from ``train.*``.

Built-in schedules are a factor of the base lr as a function of ``t``, the number of
schedule steps done (optimizer steps, or epochs with ``on_epoch``), so that the lr of a
resumed run is a pure function of its counters:

- ``constant`` (or ``type: null``): 1.
- ``exp``: 10^(-n / exp_div_10) with n = max(0, t - max(start, 1) + 1): upstream's
  MultiplicativeLR (x10^(-1/exp_div_10) at each step from ``start``).
- ``step``: gamma^floor((t - start) / step_size) for t >= start.
- ``factor``: ``factor`` once t >= start.
- ``cosine``: from 1 to ``min_lr_factor`` over the run (after the warmup).
- ``warmup`` (any built-in type): linear ramp (t + 1) / warmup over the first units.

Any other ``type`` is a ``torch.optim.lr_scheduler`` class built with ``options``; a
list ``options.schedulers`` of ``{type, options}`` feeds SequentialLR/ChainedScheduler.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from ..utils.conf import ConfigError

OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}


def trainable_parameters(
    model: torch.nn.Module, opt_regexp: str | None
) -> list[tuple[str, torch.nn.Parameter]]:
    """Parameters that require grad (and whose name matches ``opt_regexp`` if given)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if opt_regexp:
        try:
            rx = re.compile(opt_regexp)
        except re.error as e:
            raise ConfigError(
                f"train.opt_regexp {opt_regexp!r} is not a regex: {e}"
            ) from e
        for n, p in params:
            if not rx.search(n):
                p.requires_grad_(False)
        params = [(n, p) for n, p in params if rx.search(n)]
    if not params:
        raise ConfigError(
            "The model has no trainable parameter"
            + (f" matching train.opt_regexp={opt_regexp!r}." if opt_regexp else ".")
        )
    return params


def build_optimizer(params, conf: DictConfig) -> torch.optim.Optimizer:
    """``train.optimizer`` (adam, adamw, sgd, rmsprop or a torch.optim class name)."""
    name = str(conf.optimizer)
    cls_name = OPTIMIZERS.get(name.lower(), name)
    cls = getattr(torch.optim, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        known = sorted(OPTIMIZERS) + ["<any torch.optim class, e.g. NAdam>"]
        raise ConfigError(
            f"Unknown train.optimizer {name!r}. Known: {', '.join(known)}."
        )
    options = OmegaConf.to_container(conf.optimizer_options, resolve=True)
    try:
        return cls([p for _, p in params], lr=conf.lr, **options)
    except TypeError as e:
        raise ConfigError(
            f"train.optimizer_options {options} do not fit {cls_name}: {e}"
        ) from e


def schedule_factor(sc: DictConfig, total: int) -> Callable[[int], float]:
    """The lr factor of a built-in schedule as a function of t (see module doc)."""
    kind = sc.type or "constant"
    warmup = int(sc.warmup)

    if kind == "constant":
        base = lambda t: 1.0
    elif kind == "exp":
        if sc.exp_div_10 <= 0:
            raise ConfigError(
                "train.lr_schedule.type=exp needs exp_div_10 > 0 (decay x10 every "
                "exp_div_10 epochs/steps)."
            )
        first = max(int(sc.start), 1)
        base = lambda t: 10 ** (-max(0, t - first + 1) / sc.exp_div_10)
    elif kind == "step":
        if sc.step_size <= 0:
            raise ConfigError("train.lr_schedule.step_size must be positive.")
        base = lambda t: (
            sc.gamma ** ((t - sc.start) // sc.step_size) if t >= sc.start else 1.0
        )
    elif kind == "factor":
        base = lambda t: sc.factor if t >= sc.start else 1.0
    elif kind == "cosine":
        span = max(1, total - warmup)
        lo = float(sc.min_lr_factor)

        def base(t):
            x = min(1.0, max(0, t - warmup) / span)
            return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * x))
    else:
        raise AssertionError(kind)
    if warmup > 0:
        return lambda t: base(t) * min(1.0, (t + 1) / warmup)
    return base


def _torch_scheduler(optimizer, kind: str, options: dict):
    cls = getattr(torch.optim.lr_scheduler, kind, None)
    if not (isinstance(cls, type) and hasattr(cls, "step")):
        raise ConfigError(
            f"Unknown train.lr_schedule.type {kind!r}: use one of "
            "constant, exp, step, factor, cosine or a torch.optim.lr_scheduler class "
            "name (e.g. OneCycleLR)."
        )
    options = dict(options)
    if "schedulers" in options:  # SequentialLR / ChainedScheduler
        options["schedulers"] = [
            _torch_scheduler(optimizer, s["type"], s.get("options", {}))
            for s in options["schedulers"]
        ]
    try:
        if cls.__name__ == "ChainedScheduler":
            return cls(**options)
        return cls(optimizer, **options)
    except TypeError as e:
        raise ConfigError(
            f"train.lr_schedule.options {options} do not fit {kind}: {e}"
        ) from e


def build_scheduler(optimizer, conf: DictConfig, total: int):
    """The scheduler of ``train.lr_schedule``; ``total`` = schedule steps of the run."""
    sc = conf.lr_schedule
    kind = sc.type or "constant"
    if kind in ("constant", "exp", "step", "factor", "cosine"):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_factor(sc, total))
    options = OmegaConf.to_container(sc.options, resolve=True)
    return _torch_scheduler(optimizer, kind, options)
