"""Figures of a benchmark run: recall curves and the matches of the worst pairs.

* :func:`recall_figure`: cumulative error curves (recall vs threshold), one per error key
  or per run (``gluefactory.eval.compare``).
* :func:`worst_pairs_figure`: the pairs with the largest error, matches coloured green
  (correct) or red (wrong) by the benchmark's own correctness rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from ..utils.tensor import collate
from ..visualization import viz2d
from .metrics import matched_keypoints
from .results import PredictionReader


def recall_figure(
    errors: Mapping[str, Sequence[float]],
    thresholds: Sequence[float],
    title: str,
    xlabel: str,
    path: Path,
) -> Path:
    """Recall (% of pairs with error <= x) vs x up to the largest AUC threshold."""
    fig = viz2d.plot_cumulative(
        {k: np.asarray(v, float) for k, v in errors.items()}, thresholds, title, xlabel
    )
    ax = fig.axes[0]
    for t in thresholds:
        ax.axvline(t, color="grey", lw=0.5, ls=":")
    return viz2d.save(fig, path)


def worst_indices(errors: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` largest errors (failures, inf, first; NaN last)."""
    e = np.asarray(errors, float)
    e = np.where(np.isnan(e), -math.inf, e)
    return [int(i) for i in np.argsort(-e, kind="stable")[:k]]


def worst_pairs_figure(
    dataset,
    indices: Sequence[int],
    pred_path: Path,
    from_export: Callable[[dict, dict], dict],
    correct: Callable[[dict, dict], np.ndarray],
    errors: Sequence[float],
    error_label: str,
    path: Path,
) -> Path | None:
    """One row per pair: image 0 | image 1 with matches green (correct) / red (wrong)."""
    import matplotlib.pyplot as plt

    if not indices:
        return None
    rows = []
    with PredictionReader(pred_path) as reader:
        for i in indices:
            data = collate([dataset[i]])
            name = data["name"][0]
            pred = from_export(data, reader.read(name))
            ok = np.asarray(correct(data, pred), bool)
            k0, k1, _ = matched_keypoints(pred)
            rows.append((data, name, k0, k1, ok, errors[i]))
    fig, axes = plt.subplots(
        len(rows), 2, figsize=(10, 3.6 * len(rows)), dpi=90, squeeze=False
    )
    for (data, name, k0, k1, ok, err), ax in zip(rows, axes, strict=True):
        for j in (0, 1):
            img = viz2d._image(data[f"view{j}"]["image"][0])
            ax[j].imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax[j].set_axis_off()
        colors = np.where(ok, "lime", "red").tolist()
        viz2d.plot_matches(fig, ax, k0, k1, color=colors, lw=0.5, ps=2, alpha=0.6)
        prec = ok.mean() if len(ok) else float("nan")
        ax[0].set_title(f"{name}", fontsize=8, loc="left")
        ax[1].set_title(
            f"{error_label}={err:.3g}  {len(ok)} matches, {100 * prec:.0f}% correct",
            fontsize=8,
            loc="left",
        )
    fig.tight_layout()
    return viz2d.save(fig, path)
