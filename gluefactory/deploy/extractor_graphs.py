"""The CNN of each extractor as one ONNX graph (dynamic image size), and its runtime swap.

An extractor is a CNN (image -> dense maps: the heavy part) and a selection step
(non-maximum suppression, thresholds, top-k, sub-pixel refinement, descriptor
sampling) whose loops and data-dependent sizes do not trace into a graph. The CNN is
exported (``extractor.onnx``); at run time the extractor is rebuilt from its config,
its CNN replaced by the onnxruntime session, and the selection runs as in training
(PyTorch, light operations). The extractor's state dict is saved beside the graph
(``extractor.pt``: the parameters outside the CNN, DISK's last convolution and ALIKED's
descriptor head, are read from there; the file keeps the extractor loadable strictly).

Per extractor (:data:`SPECS`), the submodule that is exported and its graph:

- ALIKED ``net`` (without ``desc_head``): ``image`` (1, 3, H, W), H and W multiples
  of 32 (the runner pads as ALIKED does) -> ``scores`` (1, H, W) and ``level0..3``
  (the factorised descriptor map);
- DISK ``unet.trunk``: ``image`` (1, 3, H', W') padded to multiples of 16 ->
  ``trunk`` (the input of the last convolution);
- XFeat ``net``: ``image`` (1, 1, H', W') normalised grey, multiples of 32 ->
  ``feats``, ``logits``, ``reliability``;
- SuperPoint(-open) ``net``: ``image`` (1, 1, H, W) -> ``logits``, ``descriptors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..models.extractors.aliked import ALIKED, FeatureLevels
from ..models.extractors.base import BaseExtractor
from ..models.extractors.disk import DISK
from ..models.extractors.superpoint_open import _SuperPointBase
from ..models.extractors.xfeat import XFeat
from ..utils.errors import ConfigError
from ..utils.fs import atomic_path
from .graph import export_graph

HW = {2: "H", 3: "W"}


def _aliked_pad(image: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """ALIKEDNet's centred replicate padding to multiples of 32, done outside the graph
    (a shape-dependent branch does not trace): the graph always gets padded images."""
    h, w = image.shape[-2:]
    ph, pw = (-h) % 32, (-w) % 32
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    return (F.pad(image, pad, mode="replicate") if ph or pw else image), pad


class _AlikedDense(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image):
        scores, fmap = self.net(image)  # image padded: the net pads nothing
        return scores, *fmap.levels


class _OnnxAliked(nn.Module):
    """ALIKED's ``net`` with the CNN in onnxruntime and the descriptor head in torch."""

    def __init__(self, run, desc_head: nn.Module):
        super().__init__()
        self.run, self.desc_head = run, desc_head

    def forward(self, image):
        h, w = image.shape[-2:]
        padded, pad = _aliked_pad(image)
        scores, *levels = self.run(padded)
        scores = scores[:, pad[2] : pad[2] + h, pad[0] : pad[0] + w]
        return scores, FeatureLevels(levels, (pad[0], pad[2]), (w, h))


class _Trunk(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, image):
        return self.unet.trunk(image)


@dataclass(frozen=True)
class Spec:
    """How one extractor class is split: the exported ``module`` and its example input."""

    wrap: Callable[[BaseExtractor], nn.Module]  # the exported module
    channels: int
    outputs: tuple[str, ...]
    output_axes: tuple[dict, ...]
    swap: Callable[[BaseExtractor, Callable], None]  # install the runtime


def _swap_aliked(ex, run):
    ex.net = _OnnxAliked(run, ex.net.desc_head)


def _swap_disk(ex, run):
    ex.unet.trunk = run  # an instance attribute shadows the method


def _swap_net(ex, run):
    del ex.net
    ex.net = run


SPECS: dict[type, Spec] = {
    ALIKED: Spec(
        lambda ex: _AlikedDense(ex.net), 3,
        ("scores", "level0", "level1", "level2", "level3"),
        ({1: "H", 2: "W"}, *[{2: f"h{k}", 3: f"w{k}"} for k in range(4)]),
        _swap_aliked,
    ),
    DISK: Spec(
        lambda ex: _Trunk(ex.unet), 3, ("trunk",), (HW,), _swap_disk
    ),
    XFeat: Spec(
        lambda ex: ex.net, 1, ("feats", "logits", "reliability"),
        ({2: "h8", 3: "w8"},) * 3, _swap_net,
    ),
    _SuperPointBase: Spec(
        lambda ex: ex.net, 1, ("logits", "descriptors"),
        ({2: "h8", 3: "w8"},) * 2, _swap_net,
    ),
}  # fmt: skip


def spec_of(extractor: BaseExtractor) -> Spec:
    """The split of ``extractor`` (ConfigError naming the extractor and option if none)."""
    for cls, spec in SPECS.items():
        if isinstance(extractor, cls):
            if isinstance(extractor, XFeat) and extractor.conf.dense:
                raise ConfigError(
                    "export_onnx: XFeat dense=true (XFeat*) is not supported; "
                    "export the sparse XFeat (dense=false)."
                )
            return spec
    raise ConfigError(
        f"export_onnx: extractor {type(extractor).__name__} is not supported; "
        f"supported: {', '.join(c.__name__.strip('_') for c in SPECS)}."
    )


def export_extractor(extractor: BaseExtractor, folder: Path, opset: int) -> dict:
    """Write ``extractor.onnx`` and ``extractor.pt``; returns the manifest entry."""
    spec = spec_of(extractor)
    extractor = extractor.eval()
    module = spec.wrap(extractor)
    g = torch.Generator().manual_seed(0)
    # multiples of 32 (what every CNN here gets); traced at one size, checked at another
    trace, check = (
        (torch.rand(1, spec.channels, h, w, generator=g),)
        for h, w in ((96, 128), (160, 224))
    )
    axes = {"image": HW, **dict(zip(spec.outputs, spec.output_axes, strict=True))}
    export_graph(
        module, trace, check, folder / "extractor.onnx", ["image"], spec.outputs, axes, opset,
    )  # fmt: skip
    with atomic_path(folder / "extractor.pt") as tmp:
        torch.save(extractor.state_dict(), tmp)
    return {"class": type(extractor).__name__, "outputs": list(spec.outputs)}
