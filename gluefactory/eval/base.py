"""Base class of benchmarks and their registry.

A benchmark declares ``default_conf`` with ``data``, ``model`` and ``eval`` sections (its
config, merged and validated when it is built, is ``self.conf``) and implements
``run(output_dir, **options) -> summaries``; ``get_benchmark("hpatches")`` finds it by
module name under :mod:`gluefactory.eval` (or by dotted module path). The benchmarks
shipped here derive from :class:`gluefactory.eval.pipeline.EvalPipeline` (a declaration)
and run through the stages of :mod:`gluefactory.eval.stages`.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any

from ..utils.conf import Configurable
from ..utils.registry import list_names, load_class


class BaseBenchmark(Configurable, metaclass=ABCMeta):
    """Configurable benchmark (config: :class:`~gluefactory.utils.conf.Configurable`).

    ``data`` and ``model`` are open sections: the dataset and the model they configure
    validate them when built. ``eval`` is checked here against the merged defaults of
    the benchmark's class hierarchy.
    """

    default_conf: dict[str, Any] = {"data": {}, "model": {}, "eval": {}}
    open_conf_keys = ("data", "model")

    def __init__(self, conf: Any = None):
        self.conf = self.build_conf(conf)

    @abstractmethod
    def run(self, output_dir: Path, **options: Any) -> dict[str, float]:
        """Run the benchmark of ``self.conf``, write its results under ``output_dir``
        and return the summaries (``options``: e.g. ``overwrite``, ``model``)."""


SEARCH = ["gluefactory.eval"]


def get_benchmark(name: str) -> type[BaseBenchmark]:
    return load_class(name, BaseBenchmark, SEARCH, "benchmark")


def list_benchmarks() -> list[str]:
    return list_names(BaseBenchmark, SEARCH, "benchmark")
