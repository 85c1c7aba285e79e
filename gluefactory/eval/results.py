"""Files of a benchmark run: ``predictions.h5``, ``results.h5``, ``summaries.json``.

Everything is written atomically (a temporary file in the same folder, then
:func:`os.replace`), so a killed run leaves either the previous file or none, never a
truncated one that a rerun would trust. Layout (see ``docs/evaluation.md``):

* ``predictions.h5``: one group per pair ``name`` with the exported arrays (keypoints in
  ORIGINAL-image pixels), attributes ``export_hash`` (hash of the data + model config
  that produced it) and ``complete`` (set last): the feature-file format of
  :mod:`gluefactory.formats.features`, whose writer and reader are used here.
* ``results.h5``: one dataset per per-pair metric (a value per pair, in dataset order),
  ``names`` and ``scenes`` as strings, the threshold sweep under ``sweep/<th>/<key>``;
  summaries duplicated as attributes; ``_export_hash`` (of the predictions they come
  from) and ``_summaries_hash`` (of the ``summaries.json`` written after them): a
  run's cached results are current only when both still hold
  (:func:`results_current`), so results are never deleted ahead of their
  replacement, and a run that fails leaves the previous ones intact.
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

from ..formats.features import FeatureReader as PredictionReader
from ..formats.features import FeatureWriter as PredictionWriter
from ..formats.features import export_hash_of
from ..formats.features import is_complete as predictions_valid
from ..utils.errors import DataError, environment_fault
from ..utils.fs import atomic_h5, atomic_path

__all__ = [
    "PredictionReader",
    "PredictionWriter",
    "config_hash",
    "export_hash_of",
    "predictions_valid",
    "read_json",
    "read_results",
    "results_current",
    "write_json",
    "write_results",
]


def config_hash(conf: Any) -> str:
    """Stable short hash of a (plain) config, to tie a cache to what produced it."""
    text = json.dumps(conf, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_results(
    path: Path,
    results: Mapping[str, list[float]],
    names: list[str],
    scenes: list[str],
    summaries: Mapping[str, float],
    sweep: Mapping[str, Mapping[str, list[float]]] | None = None,
    export_hash: str | None = None,
) -> None:
    """Write per-pair results (one array per metric key) and summaries (attributes),
    tied to the predictions' ``export_hash`` and to the summaries' JSON text."""
    with atomic_h5(path) as (f, _):
        f.attrs["_export_hash"] = export_hash or ""
        f.attrs["_summaries_hash"] = _json_hash(summaries)
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
    """``{"names", "scenes", <metric>: array, "sweep": {th: {key: array}}}``.

    A truncated or corrupt file is a :class:`DataError` naming it."""
    out: dict[str, Any] = {"sweep": {}}
    try:
        with h5py.File(path, "r") as f:
            for k, v in f.items():
                if k == "sweep":
                    for th, grp in v.items():
                        out["sweep"][th] = {kk: vv[()] for kk, vv in grp.items()}
                elif k in ("names", "scenes"):
                    out[k] = [
                        s.decode() if isinstance(s, bytes) else str(s) for s in v[()]
                    ]
                else:
                    out[k] = v[()]
    except (OSError, KeyError, ValueError) as e:
        if environment_fault(e):  # permissions, ...: that message, not "corrupt"
            raise
        raise DataError(
            f"Could not read {path}: it is truncated or corrupt ({e}). Delete it and "
            "rerun the benchmark (with --overwrite_eval) to write it again."
        ) from e
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, bool)) or v is None:
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def _json_text(data: Mapping[str, Any]) -> str:
    return json.dumps({k: _jsonable(v) for k, v in data.items()}, indent=2)


def _json_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(_json_text(data).encode()).hexdigest()[:16]


def results_current(out: Path, export_hash: str | None) -> bool:
    """``out/results.h5`` and ``out/summaries.json`` are whole, written together, and
    computed from the predictions of ``export_hash``."""
    results, summaries = Path(out) / "results.h5", Path(out) / "summaries.json"
    if export_hash is None or not (results.is_file() and summaries.is_file()):
        return False
    try:
        with h5py.File(results, "r") as f:
            tied = (f.attrs.get("_export_hash"), f.attrs.get("_summaries_hash"))
        return tied == (export_hash, _json_hash(read_json(summaries)))
    except (OSError, DataError):  # unreadable: recompute (and rewrite) them
        return False


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write a flat mapping as JSON; non-finite floats become null."""
    text = _json_text(data)
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(text + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """Read ``summaries.json`` (null back to NaN)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"Could not read {path}: {e}") from e
    return {k: (math.nan if v is None else v) for k, v in data.items()}
