"""Export a two-view pipeline (extractor + LightGlue) to a folder of ONNX graphs.

The folder is written whole or not at all (:func:`gluefactory.utils.fs.atomic_folder`):
an operator that does not export, or an option the export does not support, leaves no
file behind. ``manifest.json`` lists the graphs, the opset, the inputs and outputs and
the configs needed to run them (:class:`gluefactory.deploy.onnx.OnnxMatcher`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf

from ..models.extractors.base import BaseExtractor
from ..models.matchers.lightglue import LightGlue
from ..utils.errors import ConfigError
from ..utils.fs import atomic_folder, atomic_write_text
from .extractor_graphs import export_extractor, spec_of
from .matcher_graphs import check_exportable, export_matcher

logger = logging.getLogger(__name__)

#: the ONNX opset of every graph (onnxruntime >= 1.14, TensorRT >= 8.6 read it)
OPSET = 17
MANIFEST = "manifest.json"
FORMAT = 2  # 2: complete extractor graphs, no extractor.pt


def check_pipeline(model) -> tuple[BaseExtractor | None, LightGlue]:
    """The extractor (or None) and the LightGlue matcher of ``model``, or a ConfigError
    naming the unsupported option (before anything is written)."""
    matcher = getattr(model, "matcher", None)
    if not isinstance(matcher, LightGlue):
        name = None if matcher is None else type(matcher).__name__
        raise ConfigError(
            f"export_onnx: model.matcher must be matchers.lightglue, got {name}."
        )
    check_exportable(matcher)
    extractor = getattr(model, "extractor", None)
    if extractor is not None:
        spec_of(extractor)
    return extractor, matcher


def export_pipeline(model, output: str | Path, opset: int = OPSET) -> Path:
    """Export ``model`` (a TwoViewPipeline with a LightGlue matcher) into ``output``.

    Returns the folder. Any failure raises before ``output`` is touched.
    """
    extractor, matcher = check_pipeline(model)
    output = Path(output)
    try:
        with atomic_folder(output) as tmp:
            entry = {"format": FORMAT, "opset": opset, "torch": torch.__version__}
            entry["matcher"] = export_matcher(matcher, tmp, opset)
            entry["matcher"]["conf"] = OmegaConf.to_container(matcher.conf)
            if extractor is not None:
                entry["extractor"] = export_extractor(extractor, tmp, opset)
                entry["extractor"]["name"] = model.conf.extractor.name
                entry["extractor"]["conf"] = OmegaConf.to_container(
                    extractor.conf, resolve=True
                )
            atomic_write_text(tmp / MANIFEST, json.dumps(entry, indent=2))
    except torch.onnx.errors.UnsupportedOperatorError as e:
        raise ConfigError(
            f"export_onnx: an operator does not export to ONNX opset {opset}: {e}"
        ) from e
    logger.info("Exported %s", output)
    return output


def read_manifest(folder: str | Path) -> dict:
    """The manifest of an export folder (ConfigError if it is not one)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"{folder} is not an ONNX export folder (no {MANIFEST}); create one with "
            "`python -m gluefactory.export_onnx`."
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        older = " (an older export: its extractor ran in PyTorch from extractor.pt)"
        raise ConfigError(
            f"{path}: export format {manifest.get('format')} is not {FORMAT}"
            f"{older if manifest.get('format') == 1 else ''}; re-export the model "
            "with `python -m gluefactory.export_onnx`."
        )
    return manifest
