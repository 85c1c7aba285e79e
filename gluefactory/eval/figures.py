"""Figures of a benchmark run: recall curves and the matches of the worst pairs.

* :func:`recall_figure`: cumulative error curves (recall vs threshold), one per error key
  or per run (``gluefactory.eval.compare``).
* :func:`worst_pairs_figure`: the pairs with the largest error, matches coloured green
  (correct) or red (wrong) by the benchmark's own correctness rule, drawn with
  :func:`gluefactory.visualization.viz2d.plot_matches`; line matches the same way by
  the line ground truth (:func:`~gluefactory.visualization.viz2d.plot_line_matches`,
  ignored ones in :data:`~gluefactory.visualization.viz2d.NEUTRAL`).
* :func:`pr_curve_figure`: precision-recall curves of scored matches (ETH3D).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import to_rgba

from ..utils.fs import atomic_path
from ..visualization import viz2d
from .records import PairRecord


def save_png(fig, path: Path) -> Path:
    """Save atomically, fast (PNG compression level 1: large figures encode in ms)."""
    import matplotlib.pyplot as plt

    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})
    plt.close(fig)
    return Path(path)


def draw_recall(
    ax,
    errors: Mapping[str, Sequence[float]],
    thresholds: Sequence[float],
    title: str,
    xlabel: str,
) -> None:
    """Recall (% of pairs with error <= x) vs x up to the largest threshold, on ``ax``."""
    x = np.linspace(0, max(thresholds), 300)
    for label, errs in errors.items():
        e = np.asarray(errs, float)
        e = np.where(np.isnan(e), np.inf, e)  # failures count as misses
        ax.plot(x, [(e <= t).mean() * 100 for t in x], label=label)
    for t in thresholds:
        ax.axvline(t, color="grey", lw=0.5, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recall [%]")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def recall_figure(
    panels: Sequence[tuple[Mapping[str, Sequence[float]], Sequence[float], str, str]],
    path: Path,
) -> Path:
    """One panel per (errors by label, thresholds, title, xlabel); saved atomically."""
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4), dpi=100, squeeze=False)
    for ax, (errors, ths, title, xlabel) in zip(axes[0], panels, strict=True):
        draw_recall(ax, errors, ths, title, xlabel)
    fig.tight_layout()
    return save_png(fig, path)


def worst_indices(errors: Sequence[float], k: int) -> list[int]:
    """Indices of the ``k`` largest errors (failures, inf, first; NaN last)."""
    e = np.asarray(errors, float)
    e = np.where(np.isnan(e), -math.inf, e)
    return [int(i) for i in np.argsort(-e, kind="stable")[:k]]


def line_colors(rec: PairRecord) -> np.ndarray:
    """(K, 4) RGBA per line match: correct, wrong, or neutral (ignored by the line
    ground truth, or no ground truth)."""
    labels = rec.line_labels()
    if labels is None:
        labels = np.full(rec.num_line_matches, -1)
    palette = np.array(
        [to_rgba(c) for c in (viz2d.NEUTRAL, viz2d.WRONG, viz2d.CORRECT)]
    )
    return palette[labels + 1]


def draw_line_matches(fig, axes, rec: PairRecord) -> None:
    """The record's line matches on (image 0, image 1), coloured by :func:`line_colors`."""
    if rec.num_line_matches:
        viz2d.plot_line_matches(fig, axes, rec.lines0, rec.lines1, line_colors(rec))


def line_title(rec: PairRecord) -> str:
    """ ", K line matches, P% correct" (empty without lines)."""
    if rec.num_lines is None:
        return ""
    labels = rec.line_labels()
    counted = 0 if labels is None else int((labels >= 0).sum())
    prec = f", {100 * (labels == 1).sum() / counted:.0f}% correct" if counted else ""
    return f"; {rec.num_line_matches} line matches{prec}"


def worst_pairs_figure(
    dataset,
    indices: Sequence[int],
    records: Sequence[PairRecord],
    correct_th: float,
    errors: Sequence[float],
    error_label: str,
    path: Path,
) -> Path | None:
    """One row per pair: image 0 | image 1, matches green (correct) / red (wrong).

    Correctness is the records' ``match_error`` below ``correct_th`` (the benchmark's
    rule, computed once by the evaluation); ``dataset[i]`` gives the images, in the
    pixels of the records' keypoints.
    """
    import matplotlib.pyplot as plt

    if not indices:
        return None
    fig, axes = plt.subplots(
        len(indices), 2, figsize=(10, 3.6 * len(indices)), dpi=80, squeeze=False
    )
    for i, row in zip(indices, axes, strict=True):
        rec, item = records[i], dataset[i]
        for v, ax in enumerate(row):
            viz2d.show_image(ax, item[f"view{v}"]["image"])
        ok = rec.correct(correct_th)
        colors = np.where(ok[:, None], [to_rgba(viz2d.CORRECT)], [to_rgba(viz2d.WRONG)])
        viz2d.plot_matches(fig, row, rec.kpts0, rec.kpts1, color=colors, alpha=0.6)
        prec = ok.mean() if len(ok) else float("nan")
        draw_line_matches(fig, row, rec)
        row[0].set_title(
            f"{rec.name}: {error_label}={errors[i]:.3g}, {len(ok)} matches, "
            f"{100 * prec:.0f}% correct{line_title(rec)}",
            fontsize=9,
            loc="left",
        )
    fig.tight_layout()
    return save_png(fig, path)


def recall_and_worst_figures(
    pipeline,
    out: Path,
    name: str,
    panel: tuple,
    results,
    error_key: str,
) -> list[Path]:
    """The figures every benchmark draws: one recall-curve panel (``name``) and, with
    ``eval.num_worst`` > 0, the matches of the pairs worst by ``error_key``, coloured by
    the benchmark's correctness rule (``pipeline.correct_th`` on the records'
    ``match_error``). ``results``: :class:`gluefactory.eval.stages.EvalResults`."""
    paths = [recall_figure([panel], out / name)]
    k = int(pipeline.conf.eval.num_worst)
    if k > 0 and results.dataset is not None:
        errors = results.per_pair[error_key]
        p = worst_pairs_figure(
            results.dataset,
            worst_indices(errors, k),
            results.records,
            pipeline.correct_th,
            errors,
            error_key,
            out / "worst_pairs.png",
        )
        paths += [p] if p else []
    return paths


def pr_curve_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], title: str, path: Path
) -> Path:
    """Precision vs recall, one curve per label (label -> (recall, precision, AP in
    %)), over iso-F1 contours (0.2 .. 0.9) as in upstream's ETH3D figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    for f in np.linspace(0.2, 0.9, 8):
        x = np.linspace(f / 2 + 1e-3, 1, 100)  # where the contour is defined
        y = f * x / (2 * x - f)
        ok = y <= 1
        ax.plot(x[ok], y[ok], color="green", alpha=0.25, lw=0.8)
        ax.annotate(f"F1={f:.1f}", xy=(0.9, f * 0.9 / (1.8 - f) + 0.01), alpha=0.5,
                    fontsize=7)  # fmt: skip
    for label, (recall, precision, ap) in curves.items():
        ax.plot(recall, precision, label=f"{label}: AP {ap:.1f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return save_png(fig, path)
