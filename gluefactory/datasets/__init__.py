"""Datasets by name: ``get_dataset("homographies")`` (module path under this package)."""

from .base_dataset import BaseDataset, get_dataset, list_datasets

__all__ = ["BaseDataset", "get_dataset", "list_datasets"]
