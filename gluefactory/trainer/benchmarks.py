"""Benchmarks during training (``--run_benchmarks``): each ``conf.benchmarks.<name>``
runs through the evaluation pipeline on the model being trained, on rank 0."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..utils.conf import ConfigError

logger = logging.getLogger(__name__)


def run_benchmarks(
    conf: DictConfig, model, output_dir: Path
) -> dict[str, dict[str, float]]:
    """Run every benchmark of ``conf.benchmarks`` on ``model``; results go under
    ``output_dir/<benchmark>/``. Returns ``{benchmark: {summary key: value}}``."""
    from ..eval.base import get_benchmark

    results = {}
    was_training = model.training
    model.eval()
    try:
        for name, bconf in (conf.get("benchmarks") or {}).items():
            bconf = (
                OmegaConf.to_container(bconf, resolve=True) if bconf is not None else {}
            )
            bconf.pop("model", None)  # the model is the one being trained
            cls = get_benchmark(name)
            bench = cls(bconf)
            if "model" not in inspect.signature(bench.run).parameters:
                raise ConfigError(
                    f"Benchmark {name} cannot evaluate an in-memory model (its run() takes "
                    "no 'model' argument): remove it from conf.benchmarks or run it "
                    "after training with --checkpoint."
                )
            out = Path(output_dir) / name
            out.mkdir(parents=True, exist_ok=True)
            summary = bench.run(out, model=model)
            results[name] = {
                k: float(v) for k, v in summary.items() if isinstance(v, (int, float))
            }
            logger.info(
                "[Benchmark %s] %s",
                name,
                " ".join(f"{k} {v:.4g}" for k, v in results[name].items()),
            )
    finally:
        if was_training:
            from .step import set_train_mode

            set_train_mode(model)
    return results
