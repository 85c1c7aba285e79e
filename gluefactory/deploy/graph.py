"""Export one module to one ONNX graph, and check it at other input sizes.

The exporter traces the module on one example: a size read into Python (a branch on
a shape, a constant computed from it) is frozen into the graph and silently wrong at
other sizes. So every graph is run by onnxruntime on a second example of different
sizes and compared with PyTorch; a difference is a ConfigError naming the graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..utils.errors import ConfigError


def _flat(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def export_graph(
    module: nn.Module,
    example: Sequence[torch.Tensor],
    check: Sequence[torch.Tensor],
    path: Path,
    inputs: Sequence[str],
    outputs: Sequence[str],
    dynamic: dict,
    opset: int,
    plain_path: bool = False,
    atol: float = 1e-3,
    compare: Callable[[list, list], bool] | None = None,
) -> None:
    """Trace ``module`` on ``example`` into ``path``, then check it on ``check``.

    ``plain_path``: trace with autograd on, so that LightGlue's layers take their plain
    path (no cached derived weights, no in-place kernels), which traces as ordinary
    operators. Float outputs must agree within ``atol``, integer outputs (indices) in
    90 % of the entries (float noise may flip a near tie). ``compare(got, want)``
    (lists of arrays) replaces that rule (keypoint sets, whose order ties may change).
    """
    module.eval()  # the exporter restores the wrapper's mode on the model's modules
    grad = torch.enable_grad() if plain_path else torch.no_grad()
    with grad, warnings.catch_warnings():
        # the TorchScript exporter (dynamo=False) is deprecated but traces these
        # models reliably; shapes frozen by the trace are caught by the check below
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module, tuple(example), str(path), dynamo=False, opset_version=opset,
            input_names=list(inputs), output_names=list(outputs),
            dynamic_axes=dynamic, do_constant_folding=True,
        )  # fmt: skip
    _check(module, check, path, inputs, outputs, atol, compare)


def _check(module, check, path: Path, inputs, outputs, atol, compare) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {k: v.numpy() for k, v in zip(inputs, check, strict=True)}
    got = session.run(None, feeds)
    with torch.no_grad():
        want = [t.numpy() for t in _flat(module(*check))]
    results = zip(outputs, got, want, strict=True)
    if compare is not None:
        results = [("outputs", None, None)] if not compare(got, want) else []
    for name, g, w in results:
        if g is None or g.shape != w.shape:
            ok = False
        elif np.issubdtype(w.dtype, np.floating):
            ok = np.allclose(g, w, atol=atol, rtol=1e-3)
        else:  # indices (matches): float noise may flip a near-tie, not a tenth
            ok = (g == w).mean() >= 0.9
        if not ok:
            sizes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in feeds.items())
            raise ConfigError(
                f"export_onnx: {path.name} output {name!r} differs from PyTorch for "
                f"inputs {sizes} (traced at other sizes): a size was frozen by the "
                "trace; this model option is not exportable."
            )
