"""Nearest-neighbour descriptor matching: mutual check, Lowe's ratio test, distance threshold.

Neighbours are found by Euclidean distance between descriptors (for L2-normalised
descriptors, ``dist^2 = 2 - 2 * similarity``, as in glue-factory). Batched: pairs may have
different keypoint counts, padded and flagged with ``keypoint_mask{0,1}`` (True = real,
absent = all real); padded points are never matched and never count as neighbours.
Any descriptor size fits (:meth:`NearestNeighborMatcher.requires`).
"""

from __future__ import annotations

import torch

from ...utils.errors import ConfigError, InputError
from ..base_model import BaseModel


def squared_distances(
    desc0: torch.Tensor, desc1: torch.Tensor, sim: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, M, N) squared L2 distances, from the similarity ``desc0 @ desc1^T``."""
    if sim is None:
        sim = desc0 @ desc1.transpose(-1, -2)
    n0 = desc0.pow(2).sum(-1)
    n1 = desc1.pow(2).sum(-1)
    return (n0[..., :, None] + n1[..., None, :] - 2 * sim).clamp(min=0)


def find_nn(
    dist: torch.Tensor,
    ratio_thresh: float | None = None,
    distance_thresh: float | None = None,
) -> torch.Tensor:
    """Index of each row's nearest column, or -1 if a test fails. dist: (B, M, N) squared.

    Ratio test: d1 <= ratio * d2 (on distances, not squared). Distance test: d1 <= thresh.
    Masked entries must be +inf; a row without a finite neighbour gets -1.
    """
    k = 2 if ratio_thresh and dist.shape[-1] > 1 else 1
    d_nn, ind = dist.topk(k, dim=-1, largest=False)
    ok = torch.isfinite(d_nn[..., 0])
    if ratio_thresh and k == 2:
        ok &= d_nn[..., 0] <= (ratio_thresh**2) * d_nn[..., 1]
    if distance_thresh:
        ok &= d_nn[..., 0] <= distance_thresh**2
    return torch.where(ok, ind[..., 0], -1)


def mutual_check(
    m0: torch.Tensor, m1: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep i -> j only if j -> i (both (B, M) / (B, N) with -1 for no match)."""
    ar0 = torch.arange(m0.shape[-1], device=m0.device)
    ar1 = torch.arange(m1.shape[-1], device=m1.device)
    loop0 = m1.gather(-1, m0.clamp(min=0)) if m1.shape[-1] else torch.full_like(m0, -1)
    loop1 = m0.gather(-1, m1.clamp(min=0)) if m0.shape[-1] else torch.full_like(m1, -1)
    m0 = torch.where((m0 > -1) & (loop0 == ar0), m0, -1)
    m1 = torch.where((m1 > -1) & (loop1 == ar1), m1, -1)
    return m0, m1


def _matched_similarity(sim: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """sim[b, i, matches[b, i]] where matched, else 0."""
    if sim.shape[-1] == 0:
        return sim.new_zeros(matches.shape)
    picked = sim.gather(2, matches.clamp(min=0)[..., None])[..., 0]
    return torch.where(matches > -1, picked, 0.0)


def _mask(data: dict, i: int, size: int) -> torch.Tensor | None:
    """``keypoint_mask{i}`` as a (B, N) bool tensor, or None when absent."""
    mask = data.get(f"keypoint_mask{i}")
    if mask is None:
        return None
    want = (data[f"descriptors{i}"].shape[0], size)
    if tuple(mask.shape) != want:
        raise InputError(
            f"keypoint_mask{i} must be {want} like descriptors{i}, got "
            f"{tuple(mask.shape)}."
        )
    return mask.bool()


class NearestNeighborMatcher(BaseModel):
    """Outputs matches0/1 (-1 = none), matching_scores0/1 (similarity of the match, 0
    when unmatched) and the (B, M, N) dot-product ``similarity``."""

    default_conf = {
        "name": "nearest_neighbor",
        "ratio_thresh": None,  # e.g. 0.8 (Lowe); None = off
        "distance_thresh": None,  # maximum descriptor distance; None = off
        "mutual_check": True,
        "loss": None,  # no trainable loss
    }
    required_data_keys = ["descriptors0", "descriptors1"]

    @classmethod
    def requires(cls, conf=None) -> dict:
        """Any descriptor size (both images alike), no scales or orientations.

        The config is checked (keys, ranges) as at construction."""
        cls.build_conf(conf)
        return {"descriptor_dim": None, "scales": False, "orientations": False}

    @classmethod
    def check_conf(cls, conf) -> None:
        """Value ranges of the thresholds (ConfigError naming the key)."""
        if conf.loss is not None:
            raise ConfigError(f"nearest_neighbor has no loss (got loss={conf.loss!r}).")
        cls._check_thresholds(
            conf, {"ratio_thresh": "ratio_thresh", "distance_thresh": "distance_thresh"}
        )
        if not isinstance(conf.mutual_check, bool):
            raise ConfigError(
                f"nearest_neighbor: mutual_check={conf.mutual_check!r} must be true "
                "or false."
            )

    @staticmethod
    def _check_thresholds(conf, keys: dict[str, str]) -> None:
        """``keys``: config key -> its kind (``ratio_thresh`` in (0, 1],
        ``distance_thresh`` > 0), each also None (off)."""
        ranges = {
            "ratio_thresh": ("in (0, 1] or None", lambda v: 0 < v <= 1),
            "distance_thresh": ("> 0 or None", lambda v: v > 0),
        }
        for key, kind in keys.items():
            why, ok = ranges[kind]
            v = conf[key]
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not ok(v):
                raise ConfigError(
                    f"{conf.name}: {key}={v!r} is out of range: must be {why}."
                )

    def _init(self, conf):
        pass

    def _forward(self, data: dict) -> dict:
        desc0, desc1 = data["descriptors0"], data["descriptors1"]
        if desc0.dim() != 3 or desc1.dim() != 3 or desc0.shape[-1] != desc1.shape[-1]:
            raise InputError(
                f"descriptors0/1 must be (B, N, D) with the same D, got "
                f"{tuple(desc0.shape)} and {tuple(desc1.shape)}."
            )
        sim = desc0 @ desc1.transpose(-1, -2)
        b, m, n = sim.shape
        if m == 0 or n == 0:
            m0 = torch.full((b, m), -1, dtype=torch.long, device=sim.device)
            m1 = torch.full((b, n), -1, dtype=torch.long, device=sim.device)
        else:
            dist = squared_distances(desc0, desc1, sim)
            valid0, valid1 = _mask(data, 0, m), _mask(data, 1, n)
            if valid0 is not None:
                dist = dist.masked_fill(~valid0[:, :, None], torch.inf)
            if valid1 is not None:
                dist = dist.masked_fill(~valid1[:, None, :], torch.inf)
            th = (self.conf.ratio_thresh, self.conf.distance_thresh)
            m0 = find_nn(dist, *th)
            m1 = find_nn(dist.transpose(1, 2), *th)
            if self.conf.mutual_check:
                m0, m1 = mutual_check(m0, m1)
        s0 = _matched_similarity(sim, m0)
        s1 = _matched_similarity(sim.transpose(1, 2), m1)
        return {
            "matches0": m0,
            "matches1": m1,
            "matching_scores0": s0,
            "matching_scores1": s1,
            "similarity": sim,
        }
