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

from ..geometry.coordinates import CENTER_OFFSET
from ..utils.fs import atomic_path
from ..utils.tensor import collate
from ..visualization import viz2d
from .metrics import matched_keypoints
from .results import PredictionReader


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


def side_by_side(img0: np.ndarray, img1: np.ndarray) -> tuple[np.ndarray, float]:
    """[img0 | img1] on one canvas (H x W x C in [0, 1]) and the x offset of img1."""
    if img0.ndim == 2:
        img0 = np.repeat(img0[..., None], 3, -1)
    if img1.ndim == 2:
        img1 = np.repeat(img1[..., None], 3, -1)
    h = max(img0.shape[0], img1.shape[0])
    canvas = np.ones((h, img0.shape[1] + img1.shape[1], 3), dtype=np.float32)
    canvas[: img0.shape[0], : img0.shape[1]] = img0
    canvas[: img1.shape[0], img0.shape[1] :] = img1
    return canvas, float(img0.shape[1])


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
    """One row per pair: [image 0 | image 1], matches green (correct) / red (wrong).

    Both images share one axis and the matches are one LineCollection, which draws
    thousands of matches in milliseconds (a ConnectionPatch per match takes seconds).
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

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
            rows.append((data, name, k0.numpy(), k1.numpy(), ok, errors[i]))
    fig, axes = plt.subplots(
        len(rows), 1, figsize=(10, 3.6 * len(rows)), dpi=80, squeeze=False
    )
    for (data, name, k0, k1, ok, err), ax in zip(rows, axes[:, 0], strict=True):
        img0 = viz2d._image(data["view0"]["image"][0])
        img1 = viz2d._image(data["view1"]["image"][0])
        canvas, dx = side_by_side(img0, img1)
        ax.imshow((canvas * 255).clip(0, 255).astype(np.uint8), interpolation="nearest")
        ax.set_axis_off()
        p0 = k0 - CENTER_OFFSET  # imshow draws pixel i centred on i
        p1 = k1 - CENTER_OFFSET + np.array([dx, 0.0])
        colors = np.where(ok[:, None], [[0.0, 1.0, 0.0, 0.6]], [[1.0, 0.0, 0.0, 0.6]])
        ax.add_collection(
            LineCollection(np.stack([p0, p1], 1), colors=colors, linewidths=0.5)
        )
        ax.scatter(
            np.r_[p0[:, 0], p1[:, 0]],
            np.r_[p0[:, 1], p1[:, 1]],
            s=1,
            c=np.r_[colors, colors],
        )
        prec = ok.mean() if len(ok) else float("nan")
        ax.set_title(
            f"{name}: {error_label}={err:.3g}, {len(ok)} matches, {100 * prec:.0f}% correct",
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
    results: dict,
    error_key: str,
    dataset=None,
    pred_path=None,
) -> list[Path]:
    """The figures every benchmark draws: one recall-curve panel (``name``) and, with
    ``eval.num_worst`` > 0, the matches of the pairs worst by ``error_key``, coloured by
    the benchmark's ``correct(data, pred)``."""
    paths = [recall_figure([panel], out / name)]
    k = int(pipeline.conf.eval.num_worst)
    if k > 0 and dataset is not None:
        errors = results[error_key]
        p = worst_pairs_figure(
            dataset,
            worst_indices(errors, k),
            pred_path,
            pipeline.from_export,
            pipeline.correct,
            errors,
            error_key,
            out / "worst_pairs.png",
        )
        paths += [p] if p else []
    return paths
