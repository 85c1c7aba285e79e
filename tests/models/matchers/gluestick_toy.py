"""Synthetic wireframe pairs with exact point and line ground truth, for GlueStick's
tests (importable as ``gluestick_toy``: the trainer finds ``ToyWireframes`` by name).

A pair: image 0 has ``n_lines`` segments (2 junctions each, junctions first among the
keypoints) and ``n_points`` other keypoints; image 1 sees most of them through a small
homography with noise, lines in a shuffled order and some with their endpoints swapped,
the rest replaced by unrelated segments and points. Descriptors of corresponding points
are noisy copies, so a small matcher learns them quickly; the line ground truth is the
line correspondence itself (``gt_line_matches0/1``, -1 where unseen).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from gluefactory.datasets.base_dataset import BaseDataset

SIZE = (160.0, 120.0)


def _warp(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.concatenate([pts, np.ones_like(pts[:, :1])], 1) @ h.T
    return p[:, :2] / p[:, 2:]


def synthetic_pair(
    seed: int,
    n_lines: int = 12,
    n_points: int = 20,
    dim: int = 16,
    seen: float = 0.75,
    noise: float = 0.5,
    desc_noise: float = 0.3,
) -> dict:
    """One pair (unbatched tensors) in the layout of the two-view pipeline's cache."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    lo, hi = np.array([8.0, 8.0]), np.array([w - 8, h - 8])
    H = np.eye(3)
    H[:2, :2] += rng.uniform(-0.08, 0.08, (2, 2))
    H[:2, 2] = rng.uniform(-4, 4, 2)

    junc0 = rng.uniform(lo, hi, (2 * n_lines, 2))
    pts0 = rng.uniform(lo, hi, (n_points, 2))
    desc0 = rng.normal(size=(2 * n_lines + n_points, dim))

    line_seen = rng.uniform(size=n_lines) < seen
    pt_seen = rng.uniform(size=n_points) < seen
    line_perm = rng.permutation(n_lines)  # line j of image 1 = line line_perm[j] of 0
    flip = rng.uniform(size=n_lines) < 0.5
    pt_perm = rng.permutation(n_points)

    junc1, desc1_j = [], []
    for j in range(n_lines):
        i = line_perm[j]
        ends = [2 * i + 1, 2 * i] if flip[j] else [2 * i, 2 * i + 1]
        if line_seen[i]:
            xy = _warp(H, junc0[ends]) + rng.normal(0, noise, (2, 2))
            d = desc0[ends] + desc_noise * rng.normal(size=(2, dim))
        else:
            xy, d = rng.uniform(lo, hi, (2, 2)), rng.normal(size=(2, dim))
        junc1.append(xy)
        desc1_j.append(d)
    seen_p = pt_seen[pt_perm]
    warped = _warp(H, pts0[pt_perm]) + rng.normal(0, noise, (n_points, 2))
    pts1 = np.where(seen_p[:, None], warped, rng.uniform(lo, hi, (n_points, 2)))
    d_pts = desc0[2 * n_lines + pt_perm] + desc_noise * rng.normal(size=(n_points, dim))
    d_pts = np.where(seen_p[:, None], d_pts, rng.normal(size=(n_points, dim)))
    kpts1 = np.concatenate([np.concatenate(junc1), pts1])
    desc1 = np.concatenate([np.concatenate(desc1_j), d_pts])
    kpts0 = np.concatenate([junc0, pts0])

    n = 2 * n_lines + n_points
    gt_lines1 = np.where(line_seen[line_perm], line_perm, -1)
    gt_lines0 = np.full(n_lines, -1)
    gt_lines0[line_perm[gt_lines1 >= 0]] = np.nonzero(gt_lines1 >= 0)[0]
    gt1 = np.full(n, -1)
    for j in range(n_lines):
        if gt_lines1[j] >= 0:
            i = line_perm[j]
            ends = [2 * i + 1, 2 * i] if flip[j] else [2 * i, 2 * i + 1]
            gt1[2 * j], gt1[2 * j + 1] = ends
    gt1[2 * n_lines :] = np.where(seen_p, 2 * n_lines + pt_perm, -1)
    gt0 = np.full(n, -1)
    gt0[gt1[gt1 >= 0]] = np.nonzero(gt1 >= 0)[0]

    idx = torch.arange(2 * n_lines).view(n_lines, 2)

    def view(kpts, desc):
        k = torch.tensor(kpts, dtype=torch.float32)
        return {
            "image_size": torch.tensor(SIZE),
            "cache": {
                "keypoints": k,
                "descriptors": torch.nn.functional.normalize(
                    torch.tensor(desc, dtype=torch.float32), dim=-1
                ),
                "keypoint_scores": torch.ones(n),
                "lines": k[: 2 * n_lines].view(n_lines, 2, 2),
                "line_scores": torch.ones(n_lines),
                "lines_junc_idx": idx.clone(),
            },
        }

    return {
        "name": f"pair_{seed}",
        "view0": view(kpts0, desc0),
        "view1": view(kpts1, desc1),
        "gt_matches0": torch.tensor(gt0),
        "gt_matches1": torch.tensor(gt1),
        "gt_line_matches0": torch.tensor(gt_lines0),
        "gt_line_matches1": torch.tensor(gt_lines1),
    }


def flatten(item: dict) -> dict:
    """A collated pair as the matcher reads it: cache keys suffixed with 0/1."""
    data = {k: v for k, v in item.items() if not k.startswith("view")}
    for i in (0, 1):
        view = item[f"view{i}"]
        data[f"view{i}"] = {"image_size": view["image_size"]}
        data.update({f"{k}{i}": v for k, v in view["cache"].items()})
    return data


class _Items(Dataset):
    def __init__(self, conf, split: str):
        self.conf = conf
        self.n = conf.num_train if split == "train" else conf.num_val
        self.offset = 0 if split == "train" else 10**6

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        c = self.conf
        return synthetic_pair(c.seed + self.offset + idx, c.n_lines, c.n_points, c.dim)


class ToyWireframes(BaseDataset):
    default_conf = {
        "num_train": 16,
        "num_val": 4,
        "n_lines": 12,
        "n_points": 20,
        "dim": 16,
    }

    def _init(self, conf):
        pass

    def get_dataset(self, split: str) -> Dataset:
        return _Items(self.conf, split)


def tiny_gluestick(**overrides) -> dict:
    """A small GlueStick for 16-D toy descriptors (3 self/cross layers, 32-D)."""
    return {
        "name": "matchers.gluestick",
        "input_dim": 16,
        "descriptor_dim": 32,
        "num_heads": 2,
        "keypoint_encoder": [16, 32],
        "GNN_layers": ["self", "cross"] * 3,
        "endpoint_scores": "per_line",
        **overrides,
    }
