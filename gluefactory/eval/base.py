"""Base class of benchmarks and their registry.

A benchmark declares ``default_conf`` with ``data``, ``model`` and ``eval`` sections (its
config, merged and validated when it is built, is ``self.conf``) and implements
``run(output_dir, **options) -> summaries``; ``get_benchmark("hpatches")`` finds it by
module name under :mod:`gluefactory.eval` (or by dotted module path). The benchmarks
shipped here derive from :class:`gluefactory.eval.pipeline.EvalPipeline`.
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
    def run(self, output_dir: Path, **options: Any) -> dict[str, float]:
        """Run the benchmark of ``self.conf``, write its results under ``output_dir``
        and return the summaries (``options``: e.g. ``overwrite``, ``model``)."""


SEARCH = ["gluefactory.eval"]


def get_benchmark(name: str) -> type[BaseBenchmark]:
    return load_class(name, BaseBenchmark, SEARCH, "benchmark")


def list_benchmarks() -> list[str]:
    return list_names(BaseBenchmark, SEARCH, "benchmark")
