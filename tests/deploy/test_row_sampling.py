"""Row-gather sampling (the extractor graphs' replacement for ``GridSample``) against
PyTorch's ``grid_sample`` and ALIKED's :class:`FeatureLevels`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gluefactory.deploy.extractor_graphs import _LevelRows
from gluefactory.deploy.row_sampling import RowMap
from gluefactory.models.extractors.aliked import FeatureLevels


def test_bilinear_is_grid_sample_with_zeros_outside():
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(5, 7, 11, generator=g)
    # inside, on the borders, half a pixel and more outside
    x = torch.cat([torch.rand(200, generator=g) * 14 - 2, torch.tensor([0.0, 10, -1])])
    y = torch.cat([torch.rand(200, generator=g) * 10 - 2, torch.tensor([0.0, 6, 6.5])])
    grid = torch.stack([x / 10 * 2 - 1, y / 6 * 2 - 1], -1)[None, None]
    want = F.grid_sample(fmap[None], grid, "bilinear", "zeros", True)[0, :, 0].t()
    got = RowMap(fmap).bilinear(x, y)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    ix, iy = torch.tensor([0, 10, 3]), torch.tensor([0, 6, 2])
    torch.testing.assert_close(RowMap(fmap).at(ix, iy), fmap[:, iy, ix].t())


def test_level_rows_are_feature_levels_at_pixels():
    """The graph's sampling of ALIKED's factorised map equals the model's."""
    g = torch.Generator().manual_seed(1)
    levels = [torch.randn(1, 4, 32 // s, 48 // s, generator=g) for s in (1, 2, 8, 16)]
    fmap = FeatureLevels(levels, (3, 2), (41, 27))
    px = torch.randint(0, 41, (300,), generator=g)
    py = torch.randint(0, 27, (300,), generator=g)
    want = fmap.at_pixels(0, px, py)
    got = _LevelRows(fmap).at_pixels(0, px, py)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
