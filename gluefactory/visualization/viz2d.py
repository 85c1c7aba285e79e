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

from ..geometry.coordinates import CENTER_OFFSET  # noqa: E402
from ..utils.fs import atomic_path  # noqa: E402

#: match colours: right / wrong according to ground truth, and unknown (no ground truth)
CORRECT, WRONG, NEUTRAL = "lime", "red", "deepskyblue"


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _image(img) -> np.ndarray:
    img = _np(img)
    if img.ndim == 3 and img.shape[0] in (1, 3):  # C x H x W
        img = img.transpose(1, 2, 0)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if (
        img.dtype.kind == "f"
    ):  # resampling overshoots [0, 1] slightly: not worth a warning
        img = np.clip(img, 0.0, 1.0)
    return img


def plot_images(
    images: Sequence,
    titles: Sequence[str] | None = None,
    dpi: int = 100,
    size: float = 5,
    title: str | None = None,
):
    """Show images side by side (``titles``: one per image, ``title``: the figure's)."""
    n = len(images)
    images = [_image(im) for im in images]
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
        ax.imshow(
            im,
            cmap="gray" if im.ndim == 2 else None,
            vmin=0,
            vmax=1 if im.dtype != np.uint8 else 255,
        )
        ax.set_axis_off()
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


def plot_matches(
    fig,
    axes,
    kpts0,
    kpts1,
    color=None,
    lw: float = 0.5,
    ps: float = 2,
    alpha: float = 0.5,
) -> None:
    """Draw lines between matched keypoints of two axes (N x 2 each).

    ``color``: a colour name for all, or a sequence of one colour per match (None:
    :data:`NEUTRAL`).
    """
    from matplotlib.patches import ConnectionPatch

    k0, k1 = _np(kpts0) - CENTER_OFFSET, _np(kpts1) - CENTER_OFFSET
    if color is None:
        color = NEUTRAL
    if isinstance(color, str):
        color = [color] * len(k0)
    for p0, p1, c in zip(k0, k1, color):
        line = ConnectionPatch(
            xyA=p1,
            xyB=p0,
            coordsA="data",
            coordsB="data",
            axesA=axes[1],
            axesB=axes[0],
            color=c,
            linewidth=lw,
            alpha=alpha,
            clip_on=False,
        )
        fig.add_artist(line)  # on the figure, so that it spans both axes
    if ps > 0:
        axes[0].scatter(k0[:, 0], k0[:, 1], c=color, s=ps, linewidths=0)
        axes[1].scatter(k1[:, 0], k1[:, 1], c=color, s=ps, linewidths=0)


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


def save(fig, path: str | Path) -> Path:
    """Save a figure atomically (:func:`gluefactory.utils.fs.atomic_path`)."""
    path = Path(path)
    with atomic_path(path, path.suffix) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return path
