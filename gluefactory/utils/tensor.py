"""Batching, device moving and small tensor helpers."""

from __future__ import annotations

import collections.abc as abc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def map_tensors(data: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Apply ``fn`` to every tensor in a nested dict/list/tuple (other leaves kept)."""
    if isinstance(data, torch.Tensor):
        return fn(data)
    if isinstance(data, abc.Mapping):
        return {k: map_tensors(v, fn) for k, v in data.items()}
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # namedtuple
        return type(data)(*(map_tensors(v, fn) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(map_tensors(v, fn) for v in data)
    if (
        hasattr(data, "to") and callable(data.to) and hasattr(data, "_data")
    ):  # tensor wrappers
        return fn(data)
    return data


def batch_to_device(
    data: Any, device: str | torch.device, non_blocking: bool = False
) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    return map_tensors(data, lambda t: t.to(device, non_blocking=non_blocking))


def collate(batch: list[Any]) -> Any:
    """Stack a list of samples: tensors and arrays are stacked, numbers become tensors,
    strings and other objects are kept as lists, dicts are collated key by key."""
    if len(batch) == 0:
        raise ValueError("Cannot collate an empty batch.")
    elem = batch[0]
    if isinstance(elem, torch.Tensor):
        shapes = {tuple(b.shape) for b in batch}
        if len(shapes) > 1:
            raise ValueError(
                f"Cannot stack tensors of different shapes {sorted(shapes)}"
            )
        return torch.stack(batch, 0)
    if isinstance(elem, np.ndarray) and elem.dtype.kind in "biufc":
        return collate([torch.from_numpy(b) for b in batch])
    if isinstance(elem, bool):
        return torch.tensor(batch)
    if isinstance(elem, (int, float)) and not isinstance(elem, bool):
        return torch.tensor(batch)
    if isinstance(elem, abc.Mapping):
        keys = elem.keys()
        for b in batch[1:]:
            if b.keys() != keys:
                raise ValueError(
                    f"Samples have different keys: {sorted(keys)} vs {sorted(b.keys())}"
                )
        return {k: collate([b[k] for b in batch]) for k in keys}
    if hasattr(elem, "stack") and hasattr(
        elem, "_data"
    ):  # tensor wrappers (Pose, Camera)
        return type(elem).stack(batch)
    return list(batch)


def index_batch(data: Any, i: int) -> Any:
    """Sample ``i`` of a collated batch (keeps a leading dimension of 1)."""
    return map_tensors(data, lambda t: t[i : i + 1])


def rbd(data: dict) -> dict:
    """Remove the batch dimension of every tensor (batch size must be 1)."""
    return {
        k: (v[0] if isinstance(v, (torch.Tensor, np.ndarray, list)) else v)
        for k, v in data.items()
    }
