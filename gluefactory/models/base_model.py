"""Base class of every model: extractors, matchers, ground-truth generators, pipelines.

A model declares ``default_conf`` and ``required_data_keys`` (checked, recursively, at
every ``forward``). The config is handled by :class:`~gluefactory.utils.conf.Configurable`:
defaults merged over those of its parents, the user config over them, unknown keys an
error naming the key and the closest valid ones, ``self.conf`` frozen (read-only, struct).

Subclasses implement ``_init(conf)``, ``_forward(data) -> dict`` and optionally
``loss(pred, data) -> (losses, metrics)`` where every value is a tensor of shape (B,) and
``losses["total"]`` is what the optimiser minimises.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from typing import Any

import torch
from torch import nn

from ..utils.conf import ConfigError, Configurable
from ..utils.data import MissingDataError, check_data_keys

__all__ = [
    "BaseModel",
    "MissingDataError",  # re-exported (historical import path)
    "check_data_keys",  # re-exported (historical import path)
    "load_state_dict_strict",
    "num_parameters",
]


class BaseModel(nn.Module, Configurable, metaclass=ABCMeta):
    """Configurable model: see the module docstring."""

    default_conf: dict[str, Any] = {
        "name": None,
        "trainable": True,
        "freeze_batch_normalization": False,
    }
    required_data_keys: list[str] = []

    def __init__(self, conf: Any = None):
        super().__init__()
        self.conf = conf = self.build_conf(conf)
        self.required_data_keys = list(self.required_data_keys)
        self._init(conf)
        if not conf.trainable:
            for p in self.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True):
        """A frozen model (``trainable: false``) stays in eval mode: its BatchNorm uses
        the running statistics and never updates them, and dropout stays off, so the
        features a matcher trains on are the ones it is evaluated on."""
        if not self.conf.trainable:
            return super().train(False)
        super().train(mode)
        if mode and self.conf.freeze_batch_normalization:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, data: dict) -> dict:
        """Check the inputs, then run :meth:`_forward`."""
        check_data_keys(type(self).__name__, self.required_data_keys, data)
        return self._forward(data)

    @abstractmethod
    def _init(self, conf) -> None:
        """Build the layers from the frozen config."""

    @abstractmethod
    def _forward(self, data: dict) -> dict:
        """Compute the predictions."""

    def loss(self, pred: dict, data: dict) -> tuple[dict, dict]:
        """Return (losses, metrics), each a dict of (B,) tensors; losses has 'total'."""
        raise NotImplementedError(f"{type(self).__name__} has no training loss.")


def num_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(
        p.numel() for p in model.parameters() if p.requires_grad or not trainable_only
    )


def load_state_dict_strict(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    ignore: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error.

    ``ignore`` lists exact keys known to be stray in an official file (skipped explicitly).
    """
    state = {k: v for k, v in state.items() if k not in ignore}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:

        def show(keys):
            return ", ".join(keys[:12]) + (
                f" ... ({len(keys)} in all)" if len(keys) > 12 else ""
            )

        parts = [f"Weights {source} do not fit {type(model).__name__}:"]
        if missing:
            parts.append(f"  missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys: {show(unexpected)}")
        if shapes:
            parts.append(f"  wrong shapes: {show(shapes)}")
        raise ConfigError("\n".join(parts))
    model.load_state_dict(state, strict=True)
