"""Benchmarks during training (``--run_benchmarks``): each ``conf.benchmarks.<name>``
runs through the evaluation pipeline on the model being trained, on rank 0.

A benchmark section may change inference options of the model (e.g.
``benchmarks.hpatches.model.extractor.max_num_keypoints: 1024``): the model is then
rebuilt with ``conf.model`` merged with those options and the trained weights copied in
(strictly); otherwise the training model itself is evaluated.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..utils.conf import ConfigError

logger = logging.getLogger(__name__)


def _eval_model(conf: DictConfig, bconf: dict, model):
    from ..models import get_model
    from ..models.base_model import load_state_dict_strict

    train_model = OmegaConf.to_container(conf.model, resolve=True)
    merged = OmegaConf.to_container(
        OmegaConf.merge(train_model, bconf.get("model") or {}), resolve=True
    )
    if merged == train_model:
        return model, merged
    device = next(model.parameters()).device
    built = get_model(merged["name"])(merged).to(device)
    load_state_dict_strict(built, model.state_dict(), source="the model being trained")
    return built.eval(), merged


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
        for name, section in (conf.get("benchmarks") or {}).items():
            bconf = OmegaConf.to_container(section, resolve=True) if section else {}
            eval_model, bconf["model"] = _eval_model(conf, bconf, model)
            bench = get_benchmark(name)(bconf)
            params = inspect.signature(bench.run).parameters
            takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
            if "model" not in params and not takes_kwargs:
                raise ConfigError(
                    f"Benchmark {name} cannot evaluate an in-memory model (its run() "
                    "takes no 'model' argument): remove it from conf.benchmarks or run "
                    "it after training with --checkpoint."
                )
            options = {"model": eval_model}
            if "overwrite" in params:  # a restored run may redo an epoch's benchmark
                options["overwrite"] = True
            out = Path(output_dir) / name
            out.mkdir(parents=True, exist_ok=True)
            summary = bench.run(out, **options)
            results[name] = {
                k: float(v)
                for k, v in summary.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            logger.info(
                "[Benchmark %s] %s",
                name,
                " ".join(f"{k} {v:.4g}" for k, v in results[name].items()),
            )
    finally:
        if was_training:
            model.train()  # frozen components stay in eval mode (BaseModel.train)
    return results
