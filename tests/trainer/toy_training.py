"""Tiny training data for the trainer tests (importable as ``toy_training``).

``ToyPairs``: pairs of random keypoints related by a known homography, with descriptors
that are noisy copies for the points seen in both views, so that a small LightGlue can
learn to match them in a few hundred steps. The layout, noise and homography are drawn
from a generator seeded by the item index; a small extra noise is drawn from torch's
*global* RNG (as random augmentations do) to check that the trainer seeds items.
``nan_items`` lists training items whose descriptors are NaN (non-finite loss).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from gluefactory.datasets.base_dataset import BaseDataset
from gluefactory.eval.base import BaseBenchmark


def lightglue_pipeline(**matcher) -> dict:
    """Model config: cached features -> small LightGlue, homography ground truth."""
    return {
        "name": "two_view_pipeline",
        "extractor": {"name": None},
        "matcher": {
            "name": "matchers.lightglue",
            "input_dim": 16,
            "descriptor_dim": 32,
            "n_layers": 2,
            "num_heads": 1,
            "flash": False,
            "filter_threshold": 0.1,
            **matcher,
        },
        "ground_truth": {
            "name": "matchers.homography_matcher",
            "th_positive": 3.0,
            "th_negative": 3.0,
        },
    }


CALLBACKS: list = []


class _Items(Dataset):
    def __init__(self, conf, split: str):
        self.conf, self.split = conf, split
        self.n = conf.num_train if split == "train" else conf.num_val
        self.offset = {"train": 0, "val": 10**6, "test": 2 * 10**6}[split]

    def __len__(self):
        return self.n

    def sample_new_items(self, seed: int) -> None:
        """Per-epoch callback (as MegaDepth's): recorded in CALLBACKS."""
        CALLBACKS.append((self.split, seed))

    def __getitem__(self, idx):
        c = self.conf
        if c.item_delay:
            time.sleep(c.item_delay)
        rng = np.random.default_rng(c.seed + self.offset + idx)
        w, h, n, d = 128.0, 96.0, c.num_keypoints, 16
        k0 = rng.uniform([4, 4], [w - 4, h - 4], size=(n, 2))
        H = np.eye(3)
        H[:2, :2] += rng.uniform(-0.1, 0.1, (2, 2))
        H[:2, 2] = rng.uniform(-6, 6, 2)
        kh = np.concatenate([k0, np.ones((n, 1))], 1) @ H.T
        warped = kh[:, :2] / kh[:, 2:]
        seen = (
            (rng.uniform(size=n) < 0.7)
            & (warped > 2).all(1)
            & (warped < [w - 2, h - 2]).all(1)
        )
        k1 = np.where(
            seen[:, None],
            warped + rng.normal(0, 0.3, (n, 2)),
            rng.uniform([0, 0], [w, h], (n, 2)),
        )
        d0 = rng.normal(size=(n, d))
        d1 = np.where(
            seen[:, None], d0 + 0.4 * rng.normal(size=(n, d)), rng.normal(size=(n, d))
        )
        perm = rng.permutation(n)
        k1, d1 = k1[perm], d1[perm]
        d0 = torch.tensor(d0, dtype=torch.float32) + 0.05 * torch.randn(
            n, d
        )  # global RNG
        d1 = torch.tensor(d1, dtype=torch.float32)
        if self.split == "train" and idx in c.nan_items:
            d0 = d0 * float("nan")
        size = torch.tensor([w, h])

        def view(k, desc):
            desc = torch.nn.functional.normalize(desc, dim=-1)
            return {
                "image_size": size,
                "cache": {
                    "keypoints": torch.tensor(k, dtype=torch.float32),
                    "descriptors": desc,
                },
            }

        return {
            "name": f"{self.split}_{idx}",
            "scene": "toy",
            "view0": view(k0, d0),
            "view1": view(k1, d1),
            "H_0to1": torch.tensor(H, dtype=torch.float32),
        }


class ToyPairs(BaseDataset):
    default_conf = {
        "num_train": 32,
        "num_val": 10,
        "num_keypoints": 48,
        "nan_items": [],
        "item_delay": 0.0,  # seconds of sleep per item (slows a run down for SIGINT tests)
    }

    def _init(self, conf):
        pass

    def get_dataset(self, split: str) -> Dataset:
        return _Items(self.conf, split)


def toy_conf(tmp_train: dict | None = None, **data) -> dict:
    """A complete training config on ToyPairs (overrides: train dict, data kwargs)."""
    return {
        "data": {"name": "toy_training", "batch_size": 4, "val_batch_size": 4, **data},
        "model": lightglue_pipeline(),
        "train": {
            "seed": 3,
            "epochs": 1,
            "lr": 3e-3,
            "log_every_iter": 1,
            "eval_every_iter": 1000,
            "save_every_iter": 1000,
            "device": "cpu",
            **(tmp_train or {}),
        },
    }


class ToyBench(BaseBenchmark):
    """A benchmark on the in-memory model: match recall on a few toy pairs."""

    default_conf = {"data": {"num_pairs": 4}, "model": {}, "eval": {}}

    def run(self, output_dir, model=None, overwrite=False):
        from gluefactory.utils.tensor import batch_to_device, collate

        items = _Items(OmegaConf.create({**ToyPairs.default_conf, "seed": 0}), "test")
        n = self.conf.data.num_pairs
        batch = batch_to_device(
            collate([items[i] for i in range(n)]), next(model.parameters()).device
        )
        with torch.no_grad():
            pred = model(batch)
            _, metrics = model.loss(pred, batch)
        recall = float(metrics["match_recall"].mean())
        (output_dir / "summary.txt").write_text(f"{recall}\n")
        thr = model.matcher.conf.filter_threshold
        return {"match_recall": recall, "num_pairs": n, "filter_threshold": thr}
