"""Validation: every rank evaluates a disjoint shard, sums and counts are reduced.

Each loss and metric is a per-pair value (B,); the result is the mean over all pairs of
the validation set with non-finite values skipped, so it equals the single-process
value whatever the number of ranks and batch size. It runs under a fixed seed and
leaves the RNG states of the training loop untouched.
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ..utils.tensor import batch_to_device
from . import distributed
from .checkpoints import rng_state, seed_everything, set_rng_state
from .logs import Averages
from .step import autocast

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def fixed_seed(seed: int):
    state = rng_state()
    seed_everything(seed)
    try:
        yield
    finally:
        set_rng_state(state)


@torch.no_grad()
def evaluate(
    model, loader, dist, device, seed: int, mixed_precision=None, on_batch=None
):
    """Mean losses (``loss/<name>``) and metrics over the whole (sharded) loader.

    ``on_batch(i, pred, data)`` is called on each batch (e.g. to draw figures).
    """
    was_training = model.training
    model.eval()
    avg = Averages()
    try:
        with fixed_seed(seed):
            for i, batch in enumerate(loader):
                data = batch_to_device(batch, device, non_blocking=True)
                with autocast(device, mixed_precision):
                    pred = model(data)
                    losses, metrics = model.loss(pred, data)
                avg.add({f"loss/{k}": v for k, v in losses.items()})
                avg.add(metrics)
                if on_batch is not None:
                    on_batch(i, pred, {**data, **pred})
    finally:
        if was_training:
            model.train()  # frozen components stay in eval mode (BaseModel.train)
    total = Averages()
    for sums, counts in distributed.gather_objects(avg.state(), dist):
        total.merge(sums, counts)
    return total.means()
