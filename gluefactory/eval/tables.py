"""Text tables of a benchmark run: the summary (with upstream's key names) and the
RANSAC-threshold sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def format_table(head: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a dashed line under the header."""
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def summary_table(
    reported: Sequence[tuple[str, str]], summaries: Mapping[str, Any]
) -> str:
    """One row per reported (our key, upstream key) present in ``summaries``."""
    rows = [
        [ours, format_value(summaries.get(ours)), up]
        for ours, up in reported
        if ours in summaries
    ]
    return format_table(["metric", "value", "upstream key"], rows)


def sweep_table(
    robust_key: str,
    estimator: str,
    sweep: Mapping[float, Mapping[str, float]],
    best: float,
    secs: float,
    workers: int,
) -> str:
    """The AUCs and mAA of ``robust_key`` at each threshold; * marks the best."""
    keys = [k for k in next(iter(sweep.values())) if k.startswith(robust_key + "@")]
    keys.append(f"{robust_key}_mAA")
    rows = [
        [f"{th:g}{' *' if th == best else ''}", *(f"{s[k]:.4f}" for k in keys)]
        for th, s in sweep.items()
    ]
    txt = format_table(["ransac_th", *keys], rows)
    return (
        f"\nThreshold sweep ({estimator}, {len(sweep)} thresholds, "
        f"{workers} worker(s), {secs:.1f} s); * = best by mAA:\n{txt}"
    )
