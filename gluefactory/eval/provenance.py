"""Provenance of a benchmark run: what its files were computed from, and cache reuse.

* ``conf.yaml`` beside the results is :func:`saved_conf`: the benchmark's config and,
  with ``--checkpoint``, the checkpoint's name and the sha256 of its file.
* ``predictions.h5`` is tagged with :func:`export_hash`: a hash of the data + model part
  of that config (keys of :data:`NON_RESULT_KEYS` left out) and of the data's files
  (names, sizes, times: :func:`data_fingerprint`). Predictions with the same hash are
  reused, also from another results folder of the same benchmark
  (:func:`link_cached_predictions`).
* :func:`check_results_folder` refuses to mix runs: a folder holding results of another
  data/model config needs ``--overwrite``, of another ``eval`` config
  ``--overwrite_eval``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..utils import fs
from ..utils.conf import as_plain
from ..utils.errors import ConfigError
from ..utils.fingerprint import files_fingerprint
from . import results as rio
from .io import conf_diff, flatten

logger = logging.getLogger(__name__)

#: config keys that do not change results: ignored by the tag, the guard and the hash
NON_RESULT_KEYS = (
    "data.num_workers",
    "data.prefetch_factor",
    "eval.workers",
    "eval.num_worst",
    "eval.progress",
)

#: the part of a saved config that the predictions depend on
EXPORT_KEYS = ("data", "model", "checkpoint", "checkpoint_sha256")


def saved_conf(conf: Any, checkpoint: str | None) -> dict:
    """The config written beside the results. With ``checkpoint``, the sha256 of the
    file it resolves to: a retrained experiment of the same name is another model,
    whose predictions must not be taken from the cache."""
    saved = {**as_plain(conf), "checkpoint": checkpoint}
    if checkpoint:
        from ..experiments import checkpoint_file

        saved["checkpoint_sha256"] = fs.sha256_of(checkpoint_file(checkpoint))[:16]
    return saved


def export_part(conf: Mapping) -> dict:
    return {k: conf.get(k) for k in EXPORT_KEYS}


def _result_keys(flat: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in flat.items()
        if not any(k == i or k.startswith(i + ".") for i in NON_RESULT_KEYS)
    }


def export_hash(saved: Mapping, data_files: str | None = None) -> str:
    """Hash of what the predictions depend on: data and model config, checkpoint
    (of a :func:`saved_conf`) and ``data_files`` (:func:`data_fingerprint`)."""
    flat = _result_keys(flatten(export_part(saved)))
    if data_files is not None:
        flat["data_files"] = data_files
    return rio.config_hash(flat)


def data_fingerprint(dataset) -> str | None:
    """Fingerprint of the files ``dataset`` reads (its ``source_files``): predictions
    made from other files (re-downloaded, edited, regenerated) are not reused."""
    source = dataset.source_files()
    return None if source is None else files_fingerprint(*source)


def check_results_folder(
    out: Path, saved: Mapping, overwrite: bool, overwrite_eval: bool
) -> None:
    """Refuse to overwrite results of another config without the matching flag."""
    conf_path = out / "conf.yaml"
    has_results = (out / "predictions.h5").exists() or (out / "results.h5").exists()
    if not (conf_path.exists() and has_results):
        return
    old = as_plain(OmegaConf.load(conf_path))
    changed = conf_diff(export_part(old), export_part(saved), NON_RESULT_KEYS)
    if changed and not overwrite:
        raise ConfigError(
            f"{out} holds results of another data/model config (changed: "
            f"{', '.join(changed[:6])}). Pass --overwrite to replace them, or "
            "--tag NAME to write elsewhere."
        )
    changed_eval = conf_diff(
        {"eval": old.get("eval")}, {"eval": saved["eval"]}, NON_RESULT_KEYS
    )
    if changed_eval and not (overwrite or overwrite_eval):
        raise ConfigError(
            f"{out} holds results of another evaluation config (changed: "
            f"{', '.join(changed_eval[:6])}). Pass --overwrite_eval to "
            "re-evaluate from the cached predictions, or --tag NAME."
        )


def link_cached_predictions(pred_path: Path, ehash: str) -> bool:
    """Reuse a complete export of the same hash from a sibling results folder."""
    out = pred_path.parent
    for other in sorted(out.parent.glob(f"*/{pred_path.name}")):
        if other.parent == out or rio.export_hash_of(other) != ehash:
            continue
        with fs.atomic_path(pred_path, ".h5") as tmp:
            tmp.unlink()
            try:
                os.link(other, tmp)
            except OSError:
                shutil.copyfile(other, tmp)
        logger.info("Reusing the predictions of %s (same data and model).", other)
        return True
    return False
