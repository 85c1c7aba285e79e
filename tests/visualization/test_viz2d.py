"""Match figures: thin translucent lines, neutral colour unless told, clean saving."""

from __future__ import annotations

import logging

import torch
from matplotlib.colors import to_rgba
from matplotlib.patches import ConnectionPatch

from gluefactory.visualization import viz2d


def lines_of(fig) -> list[ConnectionPatch]:
    return [a for a in fig.artists if isinstance(a, ConnectionPatch)]


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
