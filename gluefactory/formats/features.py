"""hloc-style feature files: one HDF5 group of arrays per image (or pair).

Layout::

    attrs: export_hash (str: what produced the file), complete (True, set last)
    /<name>/<key>   one dataset per array (keypoints, descriptors, matches, ...)

Names may contain ``/`` (nested groups, as hloc). The file is written to a temporary
name and moved in place when the writer closes without error
(:func:`gluefactory.utils.fs.atomic_h5`), and ``complete`` is set just before: a file
without it is never trusted. A full disk stops the writer at the entry being written,
with one ``OSError`` naming the file. Which keys an exporter stores and their units are its own contract
(:mod:`gluefactory.datasets.feature_cache` for training features, docs/evaluation.md
for ``predictions.h5``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..utils.errors import DataError
from ..utils.fs import atomic_h5


def as_numpy(x: Any) -> np.ndarray:
    """An array to store: tensors detached to the CPU, half floats widened to float32."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


class FeatureWriter:
    """Write groups of arrays into a temporary HDF5 file, published on a clean exit.

    Use as a context manager: leaving it with an exception discards everything.
    """

    def __init__(self, path: str | Path, export_hash: str):
        self.path = Path(path)
        self.export_hash = export_hash
        self._ctx = atomic_h5(self.path)

    def __enter__(self) -> FeatureWriter:
        self._file, self._guard = self._ctx.__enter__()
        self._file.attrs["export_hash"] = self.export_hash
        return self

    def write(self, name: str, arrays: Mapping[str, Any]) -> None:
        """Store the arrays of one image or pair (batch dimension already removed)."""
        if name in self._file:
            raise DataError(
                f"Two entries are named {name!r}: names must be unique in {self.path}."
            )
        grp = self._file.create_group(name)
        for k, v in arrays.items():
            grp.create_dataset(k, data=as_numpy(v))
        self._guard.check()  # a full disk stops here, not after the whole export

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._file.attrs["complete"] = True
            return bool(self._ctx.__exit__(None, None, None))
        self._ctx.__exit__(exc_type, exc, tb)
        return False


def is_complete(
    path: str | Path, export_hash: str, names: Iterable[str] | None = None
) -> bool:
    """Whether ``path`` is a complete file of ``export_hash`` holding every name."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                return False
            if f.attrs.get("export_hash") != export_hash:
                return False
            return all(n in f for n in names or ())
    except OSError:
        return False


def export_hash_of(path: str | Path) -> str | None:
    """The ``export_hash`` of a complete file, else None."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("complete", False):
                return str(f.attrs.get("export_hash"))
    except OSError:
        pass
    return None


class FeatureReader:
    """Read the arrays of one name as tensors; use as a context manager (or
    :meth:`close`). Opening an unreadable file raises :class:`OSError`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = h5py.File(self.path, "r")

    def __enter__(self) -> FeatureReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def complete(self) -> bool:
        """Whether the writer finished the file."""
        return bool(self._file.attrs.get("complete", False))

    def __contains__(self, name: str) -> bool:
        return name in self._file

    def names(self) -> list[str]:
        """Every name written (``scene/a.jpg`` for nested ones), sorted."""
        found = []

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Group) and any(
                isinstance(v, h5py.Dataset) for v in obj.values()
            ):
                found.append(name)

        self._file.visititems(visit)
        return sorted(found)

    def keys(self, name: str) -> list[str]:
        """The array names stored for ``name``."""
        return list(self._file[name].keys())

    def read(
        self, name: str, keys: Iterable[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """The arrays of ``name`` (those of ``keys`` only, if given) as tensors."""
        if name not in self._file:
            raise DataError(
                f"{self.path} has no entry {name!r}: rerun with --overwrite."
            )
        grp = self._file[name]
        keys = grp.keys() if keys is None else keys
        return {k: torch.from_numpy(np.asarray(grp[k][()])) for k in keys}
