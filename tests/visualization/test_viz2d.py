"""Match figures: thin translucent lines, neutral colour unless told, clean saving."""

from __future__ import annotations

import logging

import pytest
import torch
from matplotlib.colors import to_rgba

from gluefactory.visualization import viz2d


class Line:
    """One match line of the figure's MatchLines collection (colour, alpha, width)."""

    def __init__(self, lines: viz2d.MatchLines, i: int):
        self.lines, self.i = lines, i

    def get_edgecolor(self):
        return tuple(self.lines.get_colors()[self.i])

    def get_alpha(self):
        return self.lines.get_alpha()

    def get_linewidth(self):
        widths = self.lines.get_linewidths()
        return widths[self.i % len(widths)]


def lines_of(fig) -> list[Line]:
    found = [a for a in fig.artists if isinstance(a, viz2d.MatchLines)]
    return [Line(c, i) for c in found for i in range(len(c.get_segments()))]


def test_match_lines_default_to_thin_translucent_neutral():
    fig, axes = viz2d.plot_images([torch.rand(3, 40, 60)] * 2, title="t")
    k = torch.rand(30, 2) * 40
    viz2d.plot_matches(fig, axes, k, k + 1)
    lines = lines_of(fig)
    assert len(lines) == 30
    assert {line.get_edgecolor() for line in lines} == {to_rgba(viz2d.NEUTRAL, 0.5)}
    assert all(
        line.get_alpha() == 0.5 and line.get_linewidth() <= 0.8 for line in lines
    )
    assert fig._suptitle.get_text() == "t"


def test_one_colour_per_match():
    fig, axes = viz2d.plot_images([torch.rand(3, 40, 60)] * 2)
    colors = [viz2d.CORRECT, viz2d.WRONG, viz2d.CORRECT]
    viz2d.plot_matches(fig, axes, torch.rand(3, 2) * 40, torch.rand(3, 2) * 40, colors)
    assert [line.get_edgecolor()[:3] for line in lines_of(fig)] == [
        to_rgba(c)[:3] for c in colors
    ]


def test_resampling_overshoot_is_drawn_without_warning(tmp_path, caplog):
    img = torch.rand(3, 40, 60) * 1.02 - 0.01  # as bilinear/antialiased resizing gives
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        fig, axes = viz2d.plot_images([img, img])
        viz2d.plot_matches(fig, axes, torch.zeros(0, 2), torch.zeros(0, 2))
        path = viz2d.save(fig, tmp_path / "sub" / "m.png")
    assert not [r for r in caplog.records if "Clipping" in r.getMessage()]
    assert path.stat().st_size > 0
    assert [p.name for p in path.parent.iterdir()] == ["m.png"]  # no temporary left


def test_thousands_of_matches_are_one_artist_that_follows_the_layout(tmp_path):
    fig, axes = viz2d.plot_images([torch.rand(3, 40, 60)] * 2)
    k = torch.rand(5000, 2) * 40
    viz2d.plot_matches(fig, axes, k, k)
    assert len([a for a in fig.artists if isinstance(a, viz2d.MatchLines)]) == 1
    (lines,) = fig.artists
    fig.canvas.draw()
    seg = lines.get_segments()[0]  # display coordinates, recomputed at draw time
    p0 = axes[0].transData.transform(k[:1].numpy() - 0.5)[0]
    p1 = axes[1].transData.transform(k[:1].numpy() - 0.5)[0]
    assert abs(seg[0] - p0).max() < 1e-6 and abs(seg[1] - p1).max() < 1e-6
    assert viz2d.save(fig, tmp_path / "many.png").stat().st_size > 0


def test_learning_curves_from_metrics_jsonl(tmp_path):
    import json

    from gluefactory.trainer.report import read_metrics
    from gluefactory.utils.errors import DataError

    recs = [{"kind": "train", "step": s, "loss/total": 1.0 / s} for s in (1, 2, 3)]
    recs += [{"kind": "val", "step": 3, "match_recall": 0.5},
             {"kind": "val", "step": 6, "match_recall": None}]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    runs = {"a": read_metrics(tmp_path), "none": read_metrics(tmp_path / "missing")}
    assert runs["a"] == recs and runs["none"] == []
    panels = [("train", "loss/total", "loss"), ("val", "match_recall", "recall")]
    fig = viz2d.plot_curves(runs, panels, {"match_recall": (0, 1)})
    loss, recall = fig.axes
    assert list(loss.lines[0].get_ydata()) == [1.0, 0.5, 1 / 3]
    assert list(recall.lines[0].get_xdata()) == [3]  # null values are not drawn
    assert recall.get_ylim() == (0, 1)
    assert viz2d.save(fig, tmp_path / "c.png").stat().st_size > 0
    both = {"loss/total": "total", "match_recall": "recall"}  # several keys, one panel
    (ax,) = viz2d.plot_curves({"a": recs}, [("train", both, "t")]).axes
    assert [line.get_label() for line in ax.lines] == ["a total", "a recall"]
    assert len(ax.lines[1].get_xdata()) == 0  # no train record has match_recall
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="line 1"):
        read_metrics(tmp_path)
