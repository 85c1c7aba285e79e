"""Matplotlib helpers to draw image pairs, keypoints and matches.

Keypoints are in the library convention (pixel centres at +0.5); ``imshow`` draws pixel
(i, j) centred on (i, j), so points are shifted by -0.5 before plotting. Match lines are
thin and translucent by default (so that a thousand of them do not hide the images), in
:data:`CORRECT` / :data:`WRONG` when ground truth says which is which, else :data:`NEUTRAL`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import to_rgba_array  # noqa: E402
from matplotlib.transforms import IdentityTransform  # noqa: E402

from ..geometry.coordinates import CENTER_OFFSET  # noqa: E402
from ..utils.fs import atomic_path  # noqa: E402

#: match colours: right / wrong according to ground truth, and unknown (no ground truth)
CORRECT, WRONG, NEUTRAL = "lime", "red", "deepskyblue"


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_array(img) -> np.ndarray:
    """An image (torch or NumPy, C x H x W or H x W x C) as H x W (x 3) for ``imshow``."""
    img = _np(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):  # C x H x W
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.dtype.kind == "f":  # [0, 1]; resampling overshoots it slightly
        # 8 bits are what the PNG shows, and Agg resamples them faster than floats
        img = (np.clip(img, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    return img


def show_image(ax, img) -> None:
    """Draw one image on ``ax`` (grey levels in grey), without axis decorations."""
    im = image_array(img)
    ax.imshow(
        im,
        cmap="gray" if im.ndim == 2 else None,
        vmin=0,
        vmax=255 if im.dtype == np.uint8 else 1,
    )
    ax.set_axis_off()


def plot_images(
    images: Sequence,
    titles: Sequence[str] | None = None,
    dpi: int = 100,
    size: float = 5,
    title: str | None = None,
):
    """Show images side by side (``titles``: one per image, ``title``: the figure's)."""
    n = len(images)
    images = [image_array(im) for im in images]
    ratios = [im.shape[1] / im.shape[0] for im in images]
    fig, axes = plt.subplots(
        1,
        n,
        figsize=(size * sum(ratios), size),
        dpi=dpi,
        gridspec_kw={"width_ratios": ratios},
    )
    axes = np.atleast_1d(axes)
    for i, (ax, im) in enumerate(zip(axes, images)):
        show_image(ax, im)
        if titles:
            ax.set_title(titles[i])
    if title:  # a band at the top, above the axes' titles
        fig.suptitle(title, y=0.995, va="top")
    top = 1 - 0.4 / size if title else 1  # ~0.4 inch for the figure title
    fig.tight_layout(pad=0.5, rect=(0, 0, 1, top))
    return fig, axes


def plot_keypoints(axes, kpts_list: Sequence, color="lime", ps: float = 4) -> None:
    for ax, k in zip(axes, kpts_list):
        k = _np(k) - CENTER_OFFSET
        ax.scatter(k[:, 0], k[:, 1], c=color, s=ps, linewidths=0)


class MatchLines(LineCollection):
    """One line per match from a point of ``ax0`` to a point of ``ax1`` (data coords).

    A single :class:`~matplotlib.collections.LineCollection` on the figure, so thousands
    of matches draw in milliseconds (a ``ConnectionPatch`` per match takes seconds).
    Endpoints are mapped to display coordinates at draw time, like a ConnectionPatch,
    so the lines follow the axes through ``tight_layout`` and ``bbox_inches="tight"``.
    """

    def __init__(self, ax0, ax1, p0: np.ndarray, p1: np.ndarray, **kwargs):
        super().__init__([], transform=IdentityTransform(), **kwargs)
        self._ends = (ax0, ax1, np.asarray(p0, float), np.asarray(p1, float))
        self.set_segments(self._display_segments())

    def _display_segments(self) -> np.ndarray:
        ax0, ax1, p0, p1 = self._ends
        if len(p0) == 0:
            return np.zeros((0, 2, 2))
        return np.stack([ax0.transData.transform(p0), ax1.transData.transform(p1)], 1)

    def draw(self, renderer) -> None:
        self.set_segments(self._display_segments())
        super().draw(renderer)


def plot_matches(
    fig,
    axes,
    kpts0,
    kpts1,
    color=None,
    lw: float = 0.5,
    ps: float = 2,
    alpha: float = 0.5,
) -> MatchLines:
    """Draw lines between matched keypoints (N x 2 each) of ``axes[0]`` and ``axes[1]``.

    ``color``: a colour for all, or a sequence of one colour per match (None:
    :data:`NEUTRAL`). ``ps`` > 0 also draws the matched keypoints. The two axes may be
    the same one (both images on one canvas, keypoints of image 1 offset by the caller).
    Returns the lines (one artist, see :class:`MatchLines`).
    """
    k0, k1 = _np(kpts0) - CENTER_OFFSET, _np(kpts1) - CENTER_OFFSET
    k0, k1 = k0.reshape(-1, 2), k1.reshape(-1, 2)
    if color is None:
        color = NEUTRAL
    colors = to_rgba_array([color] * len(k0) if isinstance(color, str) else color)
    if len(colors) not in (1, len(k0)):
        raise ValueError(f"{len(colors)} colours given for {len(k0)} matches.")
    lines = MatchLines(
        axes[0], axes[1], k0, k1, colors=colors, linewidths=lw, alpha=alpha
    )
    lines.set_clip_on(False)
    fig.add_artist(lines)  # on the figure, so that it spans both axes
    if ps > 0 and len(k0):
        axes[0].scatter(k0[:, 0], k0[:, 1], c=colors, s=ps, linewidths=0)
        axes[1].scatter(k1[:, 0], k1[:, 1], c=colors, s=ps, linewidths=0)
    return lines


def plot_line_matches(
    fig,
    axes,
    lines0,
    lines1,
    color=None,
    lw: float = 1.5,
    alpha: float = 0.8,
    connect: bool = True,
) -> MatchLines | None:
    """Draw matched segments (K x 2 x 2 each) on ``axes[0]`` and ``axes[1]``.

    Each segment is drawn in its image in the colour of its match (``color`` as in
    :func:`plot_matches`); with ``connect`` their midpoints are joined by
    :func:`plot_matches` (thin lines, returned), so a line match reads like a point one.
    """
    l0 = (_np(lines0) - CENTER_OFFSET).reshape(-1, 2, 2)
    l1 = (_np(lines1) - CENTER_OFFSET).reshape(-1, 2, 2)
    if color is None:
        color = NEUTRAL
    colors = to_rgba_array([color] * len(l0) if isinstance(color, str) else color)
    if len(colors) not in (1, len(l0)):
        raise ValueError(f"{len(colors)} colours given for {len(l0)} line matches.")
    for ax, segs in zip(axes, (l0, l1)):
        ax.add_collection(
            LineCollection(segs, colors=colors, linewidths=lw, alpha=alpha, zorder=3)
        )
    if not connect:
        return None
    mid0, mid1 = l0.mean(1) + CENTER_OFFSET, l1.mean(1) + CENTER_OFFSET
    return plot_matches(
        fig, axes, mid0, mid1, color=colors, lw=lw / 3, ps=0, alpha=alpha / 2
    )


def plot_cumulative(
    errors: dict[str, Sequence[float]],
    thresholds: Sequence[float],
    title: str,
    xlabel: str,
):
    """Recall-vs-threshold curves (one per method), as in the benchmark figures."""
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    x = np.linspace(0, max(thresholds), 200)
    for name, errs in errors.items():
        e = np.asarray(errs, dtype=float)
        e = np.where(np.isfinite(e), e, np.inf)
        ax.plot(x, [(e <= t).mean() * 100 for t in x], label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recall [%]")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(
    runs: dict[str, list[dict]],
    panels: Sequence[tuple[str, str | dict[str, str], str]],
    ylim: dict[str, tuple[float, float]] | None = None,
):
    """One panel per ``(kind, key, title)``: ``key`` of the records of that ``kind``
    (``metrics.jsonl``: ``train``, ``val``) against ``step``, one line per run (label ->
    records, as :func:`gluefactory.trainer.report.read_metrics` gives); ``key`` may be
    several keys (key -> label), one line per run and key. ``ylim``: limits by key (the
    panel's first). Returns the figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 3.6))
    for ax, (kind, keys, title) in zip(np.atleast_1d(axes), panels):
        keys = {keys: ""} if isinstance(keys, str) else keys
        lines = [(run, key) for run in runs for key in keys]
        for i, (run, key) in enumerate(lines):
            rs = [
                r for r in runs[run] if r.get("kind") == kind and r.get(key) is not None
            ]
            style, label = "-" if kind == "train" else "o-", " ".join((run, keys[key]))
            ax.plot([r["step"] for r in rs], [r[key] for r in rs], style, color=f"C{i}",
                    label=label.strip())  # fmt: skip
        ax.set(title=title, xlabel="optimizer step")
        if ylim and next(iter(keys)) in ylim:
            ax.set_ylim(*ylim[next(iter(keys))])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def save(fig, path: str | Path) -> Path:
    """Save a figure atomically (:func:`gluefactory.utils.fs.atomic_path`)."""
    path = Path(path)
    with atomic_path(path, path.suffix) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return path
