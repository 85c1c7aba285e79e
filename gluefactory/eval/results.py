"""Files of a benchmark run: ``predictions.h5``, ``results.h5``, ``summaries.json``.

Everything is written atomically (a temporary file in the same folder, then
:func:`os.replace`), so a killed run leaves either the previous file or none, never a
truncated one that a rerun would trust. Layout (see ``docs/evaluation.md``):

* ``predictions.h5``: one group per pair ``name`` with the exported arrays (keypoints in
  ORIGINAL-image pixels), attributes ``export_hash`` (hash of the data + model config
  that produced it) and ``complete`` (set last).
* ``results.h5``: one dataset per per-pair metric (a value per pair, in dataset order),
  ``names`` and ``scenes`` as strings, the threshold sweep under ``sweep/<th>/<key>``;
  summaries duplicated as attributes.
* ``summaries.json``: ``{key: float or null}`` (non-finite values become null).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from ..utils.errors import DataError
from ..utils.fs import atomic_path


def config_hash(conf: Any) -> str:
    """Stable short hash of a (plain) config, to tie a cache to what produced it."""
    text = json.dumps(conf, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


class PredictionWriter:
    """Write per-pair predictions into a temporary HDF5 file, published on :meth:`commit`.

    Use as a context manager: leaving it with an exception discards everything.
    """

    def __init__(self, path: Path, export_hash: str):
        self.path = Path(path)
        self.export_hash = export_hash
        self._ctx = atomic_path(self.path, ".h5")

    def __enter__(self) -> PredictionWriter:
        self._tmp = self._ctx.__enter__()
        self._file = h5py.File(self._tmp, "w")
        self._file.attrs["export_hash"] = self.export_hash
        return self

    def write(self, name: str, pred: Mapping[str, Any]) -> None:
        """Store the arrays of one pair (batch dimension already removed)."""
        if name in self._file:
            raise DataError(
                f"Two pairs are named {name!r}: pair names must be unique in a dataset."
            )
        grp = self._file.create_group(name)
        for k, v in pred.items():
            grp.create_dataset(k, data=_np(v))

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self._file.attrs["complete"] = True
        self._file.close()
        if exc_type is None:
            return bool(self._ctx.__exit__(None, None, None))
        self._ctx.__exit__(exc_type, exc, tb)
        return False


def predictions_valid(
    path: Path, export_hash: str, names: list[str] | None = None
) -> bool:
    """Whether ``path`` is a complete export of ``export_hash`` (holding ``names``)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if not f.attrs.get("complete", False):
                return False
            if f.attrs.get("export_hash") != export_hash:
                return False
            if names is not None and not all(n in f for n in names):
                return False
    except OSError:
        return False
    return True


def export_hash_of(path: Path) -> str | None:
    """The ``export_hash`` of a complete predictions file, else None."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("complete", False):
                return str(f.attrs.get("export_hash"))
    except OSError:
        pass
    return None


class PredictionReader:
    """Read the predictions of one pair as float/int tensors."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = h5py.File(self.path, "r")

    def __enter__(self) -> PredictionReader:
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def __contains__(self, name: str) -> bool:
        return name in self._file

    def read(self, name: str) -> dict[str, torch.Tensor]:
        if name not in self._file:
            raise DataError(
                f"{self.path} has no predictions for pair {name!r}: rerun with --overwrite."
            )
        return {k: torch.from_numpy(v[()]) for k, v in self._file[name].items()}


def write_results(
    path: Path,
    results: Mapping[str, list[float]],
    names: list[str],
    scenes: list[str],
    summaries: Mapping[str, float],
    sweep: Mapping[str, Mapping[str, list[float]]] | None = None,
) -> None:
    """Write per-pair results (one array per metric key) and summaries (attributes)."""
    with atomic_path(path, ".h5") as tmp, h5py.File(tmp, "w") as f:
        strings = h5py.string_dtype()
        f.create_dataset("names", data=np.array(names, dtype=object), dtype=strings)
        f.create_dataset("scenes", data=np.array(scenes, dtype=object), dtype=strings)
        for k, v in results.items():
            f.create_dataset(k.replace("/", "_"), data=np.asarray(v, dtype=np.float64))
        for th, res in (sweep or {}).items():
            grp = f.create_group(f"sweep/{th}")
            for k, v in res.items():
                grp.create_dataset(
                    k.replace("/", "_"), data=np.asarray(v, dtype=np.float64)
                )
        for k, v in summaries.items():
            f.attrs[k] = v if isinstance(v, str) else float(v)


def read_results(path: Path) -> dict[str, Any]:
    """``{"names", "scenes", <metric>: array, "sweep": {th: {key: array}}}``."""
    out: dict[str, Any] = {"sweep": {}}
    with h5py.File(path, "r") as f:
        for k, v in f.items():
            if k == "sweep":
                for th, grp in v.items():
                    out["sweep"][th] = {kk: vv[()] for kk, vv in grp.items()}
            elif k in ("names", "scenes"):
                out[k] = [s.decode() if isinstance(s, bytes) else str(s) for s in v[()]]
            else:
                out[k] = v[()]
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a flat mapping as JSON; non-finite floats become null."""
    text = json.dumps({k: _jsonable(v) for k, v in data.items()}, indent=2)
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(text + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read ``summaries.json`` (null back to NaN)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"Could not read {path}: {e}") from e
    return {k: (math.nan if v is None else v) for k, v in data.items()}
