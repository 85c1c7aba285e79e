"""A minimal rank for spawn tests (a plain module, importable by spawned children)."""

from __future__ import annotations

import torch

from gluefactory.trainer import distributed


def ddp_rank(steps: int) -> None:
    """What every training rank does, reduced: join, build DDP, run collectives, leave."""
    d = distributed.init("cpu")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
    for _ in range(steps):
        model(torch.randn(2, 4)).sum().backward()
        distributed.any_true(False, d)
    distributed.leave(d, finished=True)
