"""Batch order of training (resumable, rank-split, overfit) and validation shards."""

from __future__ import annotations

import pytest

from gluefactory.trainer.data import SeededItems, ShardBatches, TrainBatches
from gluefactory.utils.conf import ConfigError


def indices(batches):
    return [[i for i, _ in b] for b in batches]


def test_ranks_split_the_same_global_batches():
    one = TrainBatches(30, 6, seed=1)
    ranks = [TrainBatches(30, 6, seed=1, rank=r, world_size=3) for r in range(3)]
    for e in (0, 1):
        one.set_epoch(e)
        for r in ranks:
            r.set_epoch(e)
        glob = [sum(parts, []) for parts in zip(*(list(r) for r in ranks))]
        assert glob == list(one)
    assert len(one) == 5  # 30 // 6, the incomplete batch dropped


def test_epochs_are_permutations_and_differ():
    s = TrainBatches(24, 4, seed=0)
    s.set_epoch(0)
    e0 = sum(indices(s), [])
    s.set_epoch(1)
    e1 = sum(indices(s), [])
    assert sorted(e0) == sorted(e1) == list(range(24))
    assert e0 != e1


def test_restart_position_continues_the_epoch():
    s = TrainBatches(40, 4, seed=5)
    s.set_epoch(3)
    full = list(s)
    s.set_epoch(3, start=4)
    assert list(s) == full[4:] and len(s) == 6


def test_item_seeds_depend_on_epoch_not_on_position():
    s = TrainBatches(16, 4, seed=2)
    s.set_epoch(0)
    seeds0 = dict(x for b in s for x in b)
    s.set_epoch(1)
    seeds1 = dict(x for b in s for x in b)
    assert all(seeds0[i] != seeds1[i] for i in seeds0)


def test_overfit_repeats_one_batch():
    s = TrainBatches(40, 4, seed=0, overfit=True)
    s.set_epoch(2)
    batches = list(s)
    assert len(batches) == 10 and all(b == batches[0] for b in batches)


def test_indivisible_batch_and_tiny_sets_are_errors():
    with pytest.raises(ConfigError, match="not divisible by the 3 processes"):
        TrainBatches(30, 4, seed=0, world_size=3)
    with pytest.raises(ConfigError, match="fewer than one batch"):
        TrainBatches(3, 4, seed=0)


@pytest.mark.parametrize("n,world", [(10, 2), (7, 3), (2, 4)])
def test_validation_shards_are_disjoint_and_cover_the_set(n, world):
    seen = []
    for r in range(world):
        for b in ShardBatches(n, 3, seed=0, rank=r, world=world):
            seen += [i for i, _ in b]
    assert sorted(seen) == list(range(n))


def test_seeded_items_are_reproducible_and_keep_the_callers_rng():
    import random

    import numpy as np
    import torch

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return (random.random(), float(np.random.rand()), float(torch.rand(())))

    ds = SeededItems(Noisy())
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b = ds[(1, 123)], ds[(1, 123)]
    assert a == b and ds[(1, 124)] != a
    assert torch.equal(before, torch.get_rng_state())
