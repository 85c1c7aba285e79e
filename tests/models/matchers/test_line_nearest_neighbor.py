"""matchers.line_nearest_neighbor: endpoint descriptors, both orientations, masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gluefactory.models import get_model
from gluefactory.models.matchers.line_nearest_neighbor import (
    endpoint_descriptors,
    line_similarity,
)
from gluefactory.utils.errors import ConfigError


def _scene(seed: int = 0, n: int = 40, lines: int = 12):
    g = torch.Generator().manual_seed(seed)
    desc0 = F.normalize(torch.randn(1, n, 32, generator=g), dim=-1)
    perm = torch.randperm(n, generator=g)
    desc1 = desc0[:, perm] + 0.05 * torch.randn(1, n, 32, generator=g)
    desc1 = F.normalize(desc1, dim=-1)
    inv = torch.argsort(perm)  # point i of view 0 is point inv[i] of view 1
    idx0 = torch.randint(0, n, (1, lines, 2), generator=g)
    lperm = torch.randperm(lines, generator=g)
    idx1 = inv[idx0[:, lperm]]
    idx1[:, ::2] = idx1[:, ::2].flip(-1)  # half the lines reversed in view 1
    return desc0, desc1, idx0, idx1, torch.argsort(lperm)


def test_similarity_ignores_the_orientation():
    desc0, desc1, idx0, idx1, _ = _scene()
    e0, e1 = endpoint_descriptors(desc0, idx0), endpoint_descriptors(desc1, idx1)
    assert torch.allclose(line_similarity(e0, e1), line_similarity(e0, e1.flip(2)))
    assert torch.allclose(
        line_similarity(e0, e0).diagonal(dim1=1, dim2=2), torch.ones(1)
    )


def test_recovers_the_line_correspondences():
    desc0, desc1, idx0, idx1, truth = _scene()
    model = get_model("matchers.line_nearest_neighbor")({})
    pred = model(
        {"descriptors0": desc0, "descriptors1": desc1,
         "lines_junc_idx0": idx0, "lines_junc_idx1": idx1}
    )  # fmt: skip
    assert torch.equal(pred["line_matches0"][0], truth)
    assert (pred["line_matching_scores0"] > 0.9).all()
    # the points are matched as by matchers.nearest_neighbor
    points = get_model("matchers.nearest_neighbor")({})(
        {"descriptors0": desc0, "descriptors1": desc1}
    )
    for key in ("matches0", "matches1", "matching_scores0"):
        assert torch.equal(pred[key], points[key])


def test_padded_lines_are_never_matched():
    desc0, desc1, idx0, idx1, truth = _scene()
    mask1 = torch.ones(1, 12, dtype=torch.bool)
    mask1[0, truth[0]] = False  # the partner of line 0 is padding
    pred = get_model("matchers.line_nearest_neighbor")({})(
        {"descriptors0": desc0, "descriptors1": desc1, "lines_junc_idx0": idx0,
         "lines_junc_idx1": idx1, "line_mask1": mask1}
    )  # fmt: skip
    assert pred["line_matches1"][0, truth[0]] == -1
    assert truth[0] not in pred["line_matches0"][0].tolist()
    empty = get_model("matchers.line_nearest_neighbor")({})(
        {"descriptors0": desc0, "descriptors1": desc1, "lines_junc_idx0": idx0,
         "lines_junc_idx1": idx1[:, :0]}
    )  # fmt: skip
    assert (empty["line_matches0"] == -1).all() and empty["line_matches1"].shape == (
        1,
        0,
    )


def test_the_pipeline_needs_a_line_extractor():
    with pytest.raises(ConfigError, match="lines"):
        get_model("two_view_pipeline")(
            {
                "extractor": {"name": "extractors.xfeat"},
                "matcher": {"name": "matchers.line_nearest_neighbor"},
            }
        )
    with pytest.raises(ConfigError, match="line_ratio_thresh"):
        get_model("matchers.line_nearest_neighbor")({"line_ratio_thresh": 2})
