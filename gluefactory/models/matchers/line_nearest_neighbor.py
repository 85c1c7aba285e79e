"""Mutual nearest neighbours for points and lines: the line baseline (GlueStick's to beat).

Points are matched as by :mod:`.nearest_neighbor` (same keys, same outputs). A line is
described by the descriptors of its two endpoints, the junctions of the wireframe
(``descriptors[lines_junc_idx]``, :mod:`gluefactory.models.lines.wireframe`): the
similarity of lines i and j is the best of the two orientations,

    sim(i, j) = max(a_i . a_j + b_i . b_j, a_i . b_j + b_i . a_j) / 2,

i.e. of the concatenated endpoint descriptors [a; b] / sqrt(2) against [a'; b'] and
[b'; a'] (unit vectors for L2-normalised descriptors, so ``dist^2 = 2 - 2 sim``, on
which the ratio and distance tests act as for points). Padded lines (``line_mask``
False) are never matched.

Outputs, besides the point matcher's: ``line_matches0/1`` (B, L0/L1) (-1 = none),
``line_matching_scores0/1`` (the similarity of the match, 0 when unmatched) and
``line_similarity`` (B, L0, L1).
"""

from __future__ import annotations

import torch

from ...utils.errors import InputError
from .nearest_neighbor import (
    NearestNeighborMatcher,
    _matched_similarity,
    find_nn,
    mutual_check,
)


def endpoint_descriptors(desc: torch.Tensor, junc_idx: torch.Tensor) -> torch.Tensor:
    """(B, N, D) point descriptors, (B, L, 2) endpoint indices -> (B, L, 2, D)."""
    b, n, d = desc.shape
    if junc_idx.dim() != 3 or junc_idx.shape[0] != b or junc_idx.shape[-1] != 2:
        raise InputError(
            f"lines_junc_idx must be (B, L, 2) with B = {b}, got "
            f"{tuple(junc_idx.shape)}."
        )
    if n == 0:
        return desc.new_zeros((b, junc_idx.shape[1], 2, d))
    flat = junc_idx.reshape(b, -1).clamp(0, n - 1)
    picked = desc.gather(1, flat[..., None].expand(-1, -1, d))
    return picked.reshape(b, -1, 2, d)


def line_similarity(ends0: torch.Tensor, ends1: torch.Tensor) -> torch.Tensor:
    """(B, L0, 2, D), (B, L1, 2, D) -> (B, L0, L1): the best orientation's mean
    endpoint similarity (module docstring)."""
    a0, b0 = ends0.unbind(2)
    a1, b1 = ends1.unbind(2)
    same = a0 @ a1.transpose(1, 2) + b0 @ b1.transpose(1, 2)
    swap = a0 @ b1.transpose(1, 2) + b0 @ a1.transpose(1, 2)
    return torch.maximum(same, swap) / 2


class LineNearestNeighbor(NearestNeighborMatcher):
    """Mutual nearest neighbours on points and on lines (module docstring)."""

    default_conf = {
        "name": "line_nearest_neighbor",
        "line_ratio_thresh": None,  # Lowe's ratio on line distances; None = off
        "line_distance_thresh": None,  # maximum line descriptor distance; None = off
    }
    required_data_keys = [
        "descriptors0",
        "descriptors1",
        "lines_junc_idx0",
        "lines_junc_idx1",
    ]

    @classmethod
    def requires(cls, conf=None) -> dict:
        """Any descriptor size, and lines with their endpoints among the points
        (``lines_junc_idx``: a ``lines.wireframe`` extractor)."""
        return {**super().requires(conf), "lines": True}

    @classmethod
    def check_conf(cls, conf) -> None:
        super().check_conf(conf)
        cls._check_thresholds(
            conf,
            {
                "line_ratio_thresh": "ratio_thresh",
                "line_distance_thresh": "distance_thresh",
            },
        )

    def _forward(self, data: dict) -> dict:
        pred = super()._forward(data)
        ends0 = endpoint_descriptors(data["descriptors0"], data["lines_junc_idx0"])
        ends1 = endpoint_descriptors(data["descriptors1"], data["lines_junc_idx1"])
        sim = line_similarity(ends0, ends1)
        b, l0, l1 = sim.shape
        if l0 == 0 or l1 == 0:
            m0 = torch.full((b, l0), -1, dtype=torch.long, device=sim.device)
            m1 = torch.full((b, l1), -1, dtype=torch.long, device=sim.device)
        else:
            dist = (2 - 2 * sim).clamp(min=0)
            for i, dim in ((0, 2), (1, 1)):  # mask0: rows, mask1: columns
                mask = data.get(f"line_mask{i}")
                if mask is not None:
                    dist = dist.masked_fill(~mask.bool().unsqueeze(dim), torch.inf)
            th = (self.conf.line_ratio_thresh, self.conf.line_distance_thresh)
            m0 = find_nn(dist, *th)
            m1 = find_nn(dist.transpose(1, 2), *th)
            if self.conf.mutual_check:
                m0, m1 = mutual_check(m0, m1)

        return {
            **pred,
            "line_matches0": m0,
            "line_matches1": m1,
            "line_matching_scores0": _matched_similarity(sim, m0),
            "line_matching_scores1": _matched_similarity(sim.transpose(1, 2), m1),
            "line_similarity": sim,
        }
