"""Base class of benchmarks and their registry.

A benchmark declares ``default_conf`` with ``data``, ``model`` and ``eval`` sections and
implements ``run(conf, output_dir)``; ``get_benchmark("hpatches")`` finds it by module
name under :mod:`gluefactory.eval` (or by dotted module path).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..utils.conf import freeze, merge_strict, to_conf
from ..utils.registry import list_names, load_class


class BaseBenchmark(metaclass=ABCMeta):
    base_default_conf: dict[str, Any] = {"data": {}, "model": {}, "eval": {}}
    default_conf: dict[str, Any] = {}

    def __init__(self, conf: Any = None):
        defaults = OmegaConf.merge(self.base_default_conf, self.default_conf)
        self.conf = freeze(merge_strict(defaults, to_conf(conf), type(self).__name__))

    @abstractmethod
    def run(self, output_dir: Path) -> dict[str, float]:
        """Run the benchmark, write results under ``output_dir`` and return summaries."""


SEARCH = ["gluefactory.eval"]


def get_benchmark(name: str) -> type[BaseBenchmark]:
    return load_class(name, BaseBenchmark, SEARCH, "benchmark")


def list_benchmarks() -> list[str]:
    return list_names(BaseBenchmark, SEARCH, "benchmark")
