"""Base class of datasets and their loaders.

A dataset declares ``default_conf`` (merged over the defaults of its parents, the base's
below included; unknown keys are an error: :class:`~gluefactory.utils.conf.Configurable`) and implements ``_init(conf)`` and ``get_dataset(split) -> torch Dataset``.
``get_data_loader`` builds a loader with the library's collate function, seeded workers
and, when asked, a distributed sampler.
"""

from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..utils.conf import ConfigError, Configurable
from ..utils.registry import list_names, load_class
from ..utils.tensor import collate

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def worker_init_fn(worker_id: int) -> None:
    """Seed numpy and python in each worker from torch's per-worker seed."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class BaseDataset(Configurable, metaclass=ABCMeta):
    """Configurable dataset (config: :class:`~gluefactory.utils.conf.Configurable`)."""

    #: with ``read_image: false`` the items carry every view's sizes and the geometry
    #: without decoding an image (read from the file headers): what an evaluation's
    #: metrics loop needs (``gluefactory.eval.stages.evaluate``)
    sizes_without_images: ClassVar[bool] = False

    default_conf: dict[str, Any] = {
        "name": None,
        "num_workers": 0,
        "batch_size": 1,
        "train_batch_size": None,
        "val_batch_size": None,
        "test_batch_size": None,
        "shuffle_training": True,
        "num_threads": 1,
        "seed": 0,
        "prefetch_factor": 2,
    }

    def __init__(self, conf: Any = None):
        self.conf = self.build_conf(conf)
        self._init(self.conf)

    @classmethod
    def check_conf(cls, conf) -> None:
        """Batch sizes are positive integers, worker counts non-negative integers."""
        super().check_conf(conf)
        for key in (
            "batch_size",
            "train_batch_size",
            "val_batch_size",
            "test_batch_size",
        ):
            value = conf.get(key)
            if value is None and key != "batch_size":
                continue
            if not _is_int(value) or value < 1:
                raise ConfigError(
                    f"data.{key} must be a positive integer, got {value!r}."
                )
        for key, low in (
            ("num_workers", 0),
            ("num_threads", 1),
            ("prefetch_factor", 1),
        ):
            value = conf.get(key)
            if value is not None and (not _is_int(value) or value < low):
                raise ConfigError(
                    f"data.{key} must be an integer >= {low}, got {value!r}."
                )

    @abstractmethod
    def _init(self, conf) -> None: ...

    @abstractmethod
    def get_dataset(self, split: str) -> Dataset: ...

    def source_files(self) -> tuple[Path, list[Path]] | None:
        """(root, files and folders under it) whose contents define the items: what
        the evaluation's prediction cache fingerprints
        (:func:`~gluefactory.utils.fingerprint.files_fingerprint`). None: not listed."""
        return None

    def batch_size(self, split: str) -> int:
        if split not in SPLITS:
            raise ConfigError(f"Unknown split '{split}', expected one of {SPLITS}.")
        bs = self.conf.get(f"{split}_batch_size")
        return int(bs if bs is not None else self.conf.batch_size)

    def get_data_loader(
        self,
        split: str,
        shuffle: bool | None = None,
        pinned: bool = False,
        distributed: bool = False,
    ) -> DataLoader:
        dataset = self.get_dataset(split)
        if shuffle is None:
            shuffle = split == "train" and self.conf.shuffle_training
        sampler = None
        if distributed:
            sampler = DistributedSampler(
                dataset, shuffle=shuffle, drop_last=split == "train"
            )
            shuffle = False
        workers = int(self.conf.num_workers)
        generator = torch.Generator().manual_seed(int(self.conf.seed))
        return data_loader(
            dataset,
            workers,
            pinned,
            batch_size=self.batch_size(split),
            shuffle=shuffle,
            sampler=sampler,
            generator=generator,
            prefetch_factor=self.conf.prefetch_factor if workers > 0 else None,
        )


def data_loader(
    dataset: Dataset, num_workers: int, pin_memory: bool, **kwargs: Any
) -> DataLoader:
    """The library's DataLoader (of a dataset split and of the trainer): collated
    with :func:`~gluefactory.utils.tensor.collate`, workers seeded by
    :func:`worker_init_fn`, never persistent; ``kwargs``: batching and sampling."""
    return DataLoader(
        dataset,
        num_workers=num_workers,
        pin_memory=pin_memory,
        collate_fn=collate,
        worker_init_fn=worker_init_fn,
        persistent_workers=False,
        **kwargs,
    )


SEARCH = ["gluefactory.datasets"]


def get_dataset(name: str) -> type[BaseDataset]:
    """The dataset class registered as ``name`` (or a dotted module path)."""
    return load_class(name, BaseDataset, SEARCH, "dataset")


def list_datasets() -> list[str]:
    return list_names(BaseDataset, SEARCH, "dataset")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
