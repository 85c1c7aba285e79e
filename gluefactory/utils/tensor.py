"""Batching, device moving and small tensor helpers.

:func:`unbatch` is the one rule for dropping a batch dimension (the caller states the
rank of one item); :func:`rbd` applies it to every value of a batch of one.
"""

from __future__ import annotations

import collections.abc as abc
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from .errors import InputError


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
    if _is_wrapper(elem):  # Pose, Camera
        return type(elem).stack(batch)
    return list(batch)


def _batch_size(x: Any) -> int | None:
    """Leading batch size of a tensor, array, tensor wrapper or list (None: not batched)."""
    if isinstance(x, (list, tuple)):
        return len(x)
    shape = getattr(x, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) > 0 else None


def unbatch(x: Any, item_dims: int, name: str = "value") -> Any:
    """The single item of ``x``: ``x`` itself, or ``x[0]`` of a batch of one.

    **The one rule of the library for dropping a batch dimension.** The caller states the
    number of dimensions of one item (keypoints (N, 2): 2; a homography (3, 3): 2; a
    depth map (H, W): 2; matches (N,): 1; a Pose or Camera, whose ``shape`` is its batch
    shape: 0). ``x`` with ``item_dims`` dimensions is one item and is returned as is;
    with ``item_dims + 1`` and a leading size of 1 it is a batch of one and ``x[0]`` is
    returned; anything else (a batch of several, a wrong rank) is an
    :class:`~gluefactory.utils.errors.InputError` naming ``name``. The rule never
    guesses from sizes, so an (1, 2) item is not mistaken for a batch.
    """
    shape = getattr(x, "shape", None)
    if shape is None:
        raise InputError(
            f"'{name}' must be an array or tensor, got {type(x).__name__}."
        )
    ndim = len(shape)
    if ndim == item_dims:
        return x
    if ndim == item_dims + 1 and shape[0] == 1:
        return x[0]
    what = f"batch of {shape[0]}" if ndim == item_dims + 1 else f"{ndim}-D value"
    raise InputError(
        f"'{name}' must be one item with {item_dims} dimension(s) or a batch of one, "
        f"got a {what} of shape {tuple(shape)}."
    )


def rbd(data: Mapping[str, Any]) -> dict[str, Any]:
    """Remove the batch dimension of every value of a batch of one (LightGlue's ``rbd``).

    Tensors, arrays, tensor wrappers and lists must have a leading size of 1 (the rule
    of :func:`unbatch`, with the item being whatever follows the batch dimension);
    strings, numbers and None are kept. Nested dicts are processed recursively.
    """
    out = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out[k] = rbd(v)
        elif isinstance(v, (str, bytes, int, float)) or v is None:
            out[k] = v
        elif _batch_size(v) is None:
            out[k] = v  # scalars (0-d tensors) and other objects
        elif _batch_size(v) != 1:
            raise InputError(
                f"rbd: '{k}' has a batch of {_batch_size(v)}, expected a batch of one."
            )
        else:
            out[k] = v[0]
    return out


def _is_wrapper(x: Any) -> bool:
    """A tensor wrapper (Pose, Camera: a batched ``_data`` tensor), by duck typing, so
    that this module does not depend on the geometry package."""
    return hasattr(x, "stack") and isinstance(getattr(x, "_data", None), torch.Tensor)


def cat_batches(items: list[Any], what: str = "data", hint: str = "") -> Any:
    """Concatenate batches on their first dimension: tensors, tensor wrappers (Pose,
    Camera), lists; dicts key by key (keys common to all); other values kept once.
    Shapes that differ beyond the batch dimension: an InputError naming ``what``,
    followed by ``hint``."""
    first = items[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0:
            return first
        shapes = {tuple(x.shape[1:]) for x in items}
        if len(shapes) > 1:
            raise InputError(
                f"Cannot concatenate batches: {what} has shapes "
                f"{sorted(tuple(x.shape) for x in items)}. {hint}".strip()
            )
        return torch.cat(items, 0)
    if _is_wrapper(first):  # Pose, Camera
        return type(first)(cat_batches([x._data for x in items], what, hint))
    if isinstance(first, Mapping):
        keys = [k for k in first if all(k in x for x in items)]
        return {
            k: cat_batches([x[k] for x in items], f"{what}.{k}", hint) for k in keys
        }
    if isinstance(first, list):
        return [v for x in items for v in x]
    return first


def split_batch(data: Any, sizes: list[int]) -> list[Any]:
    """Inverse of :func:`cat_batches` for batches of the given sizes."""
    if isinstance(data, torch.Tensor) and data.dim() > 0:
        return list(torch.split(data, sizes, 0))
    if _is_wrapper(data):
        return [type(data)(d) for d in split_batch(data._data, sizes)]
    if isinstance(data, Mapping):
        parts = {k: split_batch(v, sizes) for k, v in data.items()}
        return [{k: p[i] for k, p in parts.items()} for i in range(len(sizes))]
    if isinstance(data, list) and len(data) == sum(sizes):
        ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
        return [data[e - s : e] for s, e in zip(sizes, ends)]
    return [data] * len(sizes)
