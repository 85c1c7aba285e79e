"""Logging of a run: a log file (python logging, portable), TensorBoard, averages, figures."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

FORMAT = "[%(asctime)s %(name)s %(levelname)s] %(message)s"


def add_file_log(path: Path) -> logging.Handler:
    """Append every record of the root logger to ``path`` (remove it with close_log)."""
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if not any(
        isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
        for h in root.handlers
    ):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(console)
    return handler


def close_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()


class Averages:
    """Per-key mean of (B,) values over many batches, skipping non-finite values.

    ``state()`` gives (sum, count) per key: sums of shards add up to the whole set's.
    """

    def __init__(self):
        self.sum: dict[str, float] = defaultdict(float)
        self.count: dict[str, int] = defaultdict(int)

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = torch.as_tensor(v).detach().float().reshape(-1).cpu()
            finite = torch.isfinite(v)
            self.sum[k] += float(v[finite].sum())
            self.count[k] += int(finite.sum())

    def merge(self, sums: dict[str, float], counts: dict[str, int]) -> None:
        for k in sums:
            self.sum[k] += sums[k]
            self.count[k] += counts[k]

    def state(self) -> tuple[dict[str, float], dict[str, int]]:
        return dict(self.sum), dict(self.count)

    def means(self) -> dict[str, float]:
        return {
            k: (self.sum[k] / self.count[k] if self.count[k] else math.nan)
            for k in sorted(self.sum)
        }


class Board:
    """TensorBoard writer of rank 0 (no-op elsewhere); x-axis samples or steps."""

    def __init__(self, folder: Path | None):
        self.folder, self._writer = folder, None
        #: events at or after this x are dropped when the writer opens (a restored run
        #: redoes them: :meth:`Reporter.rewind`)
        self.purge_step: int | None = None

    @property
    def writer(self):
        if self._writer is None and self.folder is not None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(
                log_dir=str(self.folder), purge_step=self.purge_step
            )
        return self._writer

    def scalars(self, prefix: str, values: dict[str, float], x: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                self.writer.add_scalar(f"{prefix}/{k}", v, x)

    def figure(self, tag: str, fig, x: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, fig, x, close=True)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def match_figures(pred: dict, data: dict, max_pairs: int = 2) -> dict:
    """Figures of the first pairs of a batch: matches green if right, red if wrong
    (by ``gt_matches0``), drawn on the images (a grey canvas when there are none)."""
    from ..visualization import viz2d

    figs = {}
    b = pred["matches0"].shape[0]
    for i in range(min(b, max_pairs)):
        images = []
        for v in (0, 1):
            view = data[f"view{v}"]
            if "image" in view:
                images.append(view["image"][i])
            else:
                w, h = (int(x) for x in view["image_size"][i].tolist())
                images.append(torch.full((h, w), 0.5))
        fig, axes = viz2d.plot_images(images, dpi=60, size=3)
        m0 = pred["matches0"][i]
        valid = m0 > -1
        k0 = pred["keypoints0"][i][valid]
        k1 = pred["keypoints1"][i][m0[valid]]
        color = None
        gt = pred.get("gt_matches0", data.get("gt_matches0"))
        if gt is not None:
            ok = (gt[i][valid] == m0[valid]).tolist()
            color = [viz2d.CORRECT if c else viz2d.WRONG for c in ok]
        viz2d.plot_matches(fig, axes, k0, k1, color=color, lw=0.5, ps=2)
        figs[f"match_{i}"] = fig
    return figs
