"""Data loading for training: resumable, rank-aware batch order and per-item seeds.

The order of the training items is a pure function of (seed, epoch): a permutation
drawn from a generator seeded with ``seed + epoch``, cut into *global* batches of
``batch_size`` (the last incomplete one dropped); rank ``r`` of ``W`` takes the r-th
slice of each global batch. So one process and W processes see the same global batches,
and a run restored at micro-batch ``k`` of an epoch resumes with batch ``k`` exactly.

Each item is loaded under a seed derived from (seed, epoch, index): random augmentations
of datasets that draw from the global RNGs are then the same whatever the number of
workers or ranks and after a restore. The main process's RNG states are left untouched.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..datasets.base_dataset import data_loader
from ..utils.conf import ConfigError

VAL_EPOCH = -1  # epoch tag of the validation items' seeds (the same every epoch)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch + 1, index]).generate_state(1)[0])


class SeededItems(Dataset):
    """Wraps a dataset: ``self[(index, seed)]`` loads item ``index`` under ``seed``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        in_worker = torch.utils.data.get_worker_info() is not None
        gen = torch.default_generator
        if not in_worker:  # keep the trainer's RNG streams untouched
            saved = random.getstate(), np.random.get_state(), gen.get_state()
        random.seed(seed)
        np.random.seed(seed % 2**32)
        gen.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            if not in_worker:
                random.setstate(saved[0])
                np.random.set_state(saved[1])
                gen.set_state(saved[2])


class TrainBatches(Sampler):
    """Batches of (index, seed) of one rank, for one epoch, from a start position.

    ``overfit`` repeats the first global batch (of epoch 0) ``len(self)`` times.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        overfit: bool = False,
        num_batches: int | None = None,
    ):
        if batch_size % world_size:
            raise ConfigError(
                f"The batch size {batch_size} is not divisible by the {world_size} "
                "processes: set data.batch_size to a multiple of the number of devices."
            )
        if num_items < batch_size:
            raise ConfigError(
                f"The training set has {num_items} items, fewer than one batch "
                f"(data.batch_size={batch_size})."
            )
        self.n, self.bs, self.seed = num_items, batch_size, seed
        self.rank, self.world = rank, world_size
        self.shuffle, self.overfit = shuffle, overfit
        full = num_items // batch_size
        self.num_batches = full if num_batches is None else min(full, num_batches)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.num_batches - self.start

    def _order(self) -> torch.Tensor:
        if self.overfit or not self.shuffle:
            return torch.arange(self.n)
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self._order()
        local = self.bs // self.world
        epoch = 0 if self.overfit else self.epoch
        for b in range(self.start, self.num_batches):
            first = 0 if self.overfit else b * self.bs
            idx = order[first + self.rank * local : first + (self.rank + 1) * local]
            yield [(int(i), item_seed(self.seed, epoch, int(i))) for i in idx]


class ShardBatches(Sampler):
    """Validation: rank r takes the r-th contiguous shard of the items, in batches."""

    def __init__(
        self, num_items: int, batch_size: int, seed: int, rank: int = 0, world: int = 1
    ):
        lo, hi = num_items * rank // world, num_items * (rank + 1) // world
        self.items = list(range(lo, hi))
        self.bs, self.seed = batch_size, seed

    def __len__(self) -> int:
        return (len(self.items) + self.bs - 1) // self.bs

    def __iter__(self):
        for i in range(0, len(self.items), self.bs):
            yield [
                (j, item_seed(self.seed, VAL_EPOCH, j))
                for j in self.items[i : i + self.bs]
            ]


def make_loader(dataset: Dataset, batches: Sampler, num_workers: int, pin: bool):
    return data_loader(SeededItems(dataset), num_workers, pin, batch_sampler=batches)


class Loaders:
    """The training and validation loaders of one rank, from ``conf.data``/``data_val``."""

    def __init__(self, conf, dist, device):
        from ..datasets.base_dataset import get_dataset

        t = conf.train
        dataset = get_dataset(conf.data.name)(conf.data)
        val_dataset = dataset
        if conf.data_val is not None:
            val_dataset = get_dataset(conf.data_val.name)(conf.data_val)
        self.train_set = dataset.get_dataset("train")
        self.val_set = val_dataset.get_dataset("val")
        if len(self.val_set) == 0:
            raise ConfigError(
                f"The validation split of dataset {val_dataset.conf.name} is empty: "
                "give it validation items (or a separate data_val)."
            )
        self.batch_size = dataset.batch_size("train")  # global micro-batch
        self.batches = TrainBatches(
            len(self.train_set),
            self.batch_size,
            t.seed,
            dist.rank,
            dist.world_size,
            shuffle=bool(dataset.conf.get("shuffle_training", True)),
            overfit=bool(t.overfit),
        )
        acc = int(t.accumulate)
        self.steps_per_epoch = self.batches.num_batches // acc
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"An epoch has {self.batches.num_batches} batches, fewer than "
                f"train.accumulate={acc}: lower train.accumulate or data.batch_size."
            )
        self.batches.num_batches = self.steps_per_epoch * acc  # whole steps only
        pin = device.type == "cuda"
        self.train = make_loader(
            self.train_set, self.batches, int(dataset.conf.num_workers), pin
        )
        vbs = max(1, val_dataset.batch_size("val") // dist.world_size)
        shards = ShardBatches(
            len(self.val_set), vbs, t.seed, dist.rank, dist.world_size
        )
        self.val = make_loader(
            self.val_set, shards, int(val_dataset.conf.num_workers), pin
        )

    def epoch_callback(self, name: str | None, seed: int, on_val: bool) -> None:
        """``train.dataset_callback_fn``: call ``dataset.<name>(seed)`` (e.g. resampling)."""
        if not name:
            return
        for ds in [self.train_set] + ([self.val_set] if on_val else []):
            fn = getattr(ds, name, None)
            if fn is None:
                raise ConfigError(
                    f"train.dataset_callback_fn={name!r}: {type(ds).__name__} has no "
                    "such method."
                )
            fn(seed)
