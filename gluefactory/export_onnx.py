"""Export a matching pipeline to ONNX, early exit and pruning kept (docs/deploy.md).

    python -m gluefactory.export_onnx --conf aliked+lightglue-official --output DIR
    python -m gluefactory.export_onnx --checkpoint EXP --output DIR [model.key=value ...]

``--conf`` names a shipped config (or a YAML file) whose ``model`` is a two-view
pipeline with a LightGlue matcher; ``--checkpoint`` exports a model trained here (its
saved config, with the ``model`` of ``--conf`` and the overrides merged over it). The
matcher's ``depth_confidence`` / ``width_confidence`` / ``filter_threshold`` become
the runner's defaults. Run the result with ``model.name=deploy.onnx model.path=DIR``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from .deploy.export import OPSET, export_pipeline
from .experiments import load_experiment
from .models import get_model
from .utils.cli import add_conf_args, conf_from_args, main_wrapper
from .utils.errors import ConfigError


def export_onnx(
    conf=None,
    output: str | Path = "onnx",
    checkpoint: str | Path | None = None,
    opset: int = OPSET,
) -> Path:
    """Build the model of ``conf`` (a config with a ``model`` section) or of the
    experiment ``checkpoint`` and export it to the folder ``output``."""
    conf = OmegaConf.create(conf or {})
    model_conf = conf.get("model")
    if checkpoint is not None:
        model = load_experiment(checkpoint, conf=model_conf)
    elif model_conf is None or model_conf.get("name") is None:
        raise ConfigError("export_onnx: give --conf with a model, or --checkpoint.")
    else:
        model = get_model(model_conf.name)(model_conf).eval()
    return export_pipeline(model, output, opset)


@main_wrapper
def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.export_onnx", description=__doc__.split("\n")[0]
    )
    add_conf_args(parser)
    parser.add_argument("--checkpoint", default=None, help="experiment name or path")
    parser.add_argument("--output", required=True, help="the export folder")
    parser.add_argument("--opset", type=int, default=OPSET)
    args = parser.parse_args(argv)
    out = export_onnx(conf_from_args(args), args.output, args.checkpoint, args.opset)
    print(f"Exported to {out}")
    return out


if __name__ == "__main__":
    main()
