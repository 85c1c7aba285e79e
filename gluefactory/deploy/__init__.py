"""Deployment: a matching pipeline as ONNX graphs, run by onnxruntime (docs/deploy.md).

- :mod:`.export`: :func:`export_pipeline` writes a folder of graphs and its manifest,
  whole or not at all (``python -m gluefactory.export_onnx`` is its CLI);
- :mod:`.matcher_graphs`: LightGlue cut into one graph per stage (encoder, each layer
  with its confidence heads, each layer's assignment), so that early exit and pruning
  are kept;
- :mod:`.lightglue_runtime`: the runner that takes the adaptive decisions between them;
- :mod:`.extractor_graphs`: each extractor as one complete graph (image -> keypoints,
  scores, descriptors), and :mod:`.extractor_runtime`, which runs it with NumPy;
- :mod:`.graph`: one module -> one graph, checked by onnxruntime at other sizes;
- :mod:`.onnx`: :class:`OnnxMatcher`, the model ``deploy.onnx`` (two-view pipeline API).

onnx and onnxruntime are the optional extra ``onnx``; importing this package needs
neither (onnxruntime is imported when a runner is built).
"""

from __future__ import annotations

from .export import export_pipeline
from .onnx import OnnxMatcher

__all__ = ["OnnxMatcher", "export_pipeline"]
