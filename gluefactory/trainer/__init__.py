"""Training of gluefactory models: see docs/training.md.

``train(experiment, conf)`` runs the loop (single process, ``--distributed`` spawn or
one rank of ``torchrun``); modules: ``config`` (``train.*`` defaults), ``optim``
(optimizers, schedules), ``data`` (resumable batch order), ``step`` (accumulation,
mixed precision, non-finite handling), ``loop`` (the Trainer), ``validation``
(sharded), ``checkpoints``, ``distributed``, ``control`` (when to stop), ``report`` and
``logs`` (log file, TensorBoard, metrics.jsonl), ``benchmarks``, ``launch``.
"""

from .benchmarks import run_benchmarks
from .config import DEFAULT_TRAIN_CONF, build_train_conf
from .launch import train
from .step import TrainingDiverged

__all__ = [
    "train",
    "build_train_conf",
    "DEFAULT_TRAIN_CONF",
    "run_benchmarks",
    "TrainingDiverged",
]
