"""Feature presets, config checks and official weights of LightGlue.

``features: aliked`` (say) fixes the architecture of the official model for ALIKED
descriptors (:data:`FEATURES`) and, unless ``weights`` says otherwise, loads its official
file from :mod:`gluefactory.weights`. Official files load unchanged
(:func:`official_state`): the legacy DISK file names its layers ``self_attn.N`` /
``cross_attn.N`` (renamed) and carries nine stray ``log_assignment.N.r`` scalars
(skipped by exact name and shape); LighterGlue's file (and training checkpoints) keep
the matcher under a ``matcher.`` prefix, of which only that component is read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ....utils.errors import ConfigError

#: architecture and official weights of each supported feature type
FEATURES: dict[str, dict] = {
    "superpoint": {"input_dim": 256, "weights": "superpoint-lightglue"},
    "disk": {"input_dim": 128, "weights": "disk-lightglue"},
    "aliked": {"input_dim": 128, "weights": "aliked-lightglue"},
    "sift": {"input_dim": 128, "add_scale_ori": True, "weights": "sift-lightglue"},
    "doghardnet": {
        "input_dim": 128,
        "add_scale_ori": True,
        "weights": "doghardnet-lightglue",
    },
    "xfeat": {  # LighterGlue (XFeat): same model, smaller
        "input_dim": 64,
        "descriptor_dim": 96,
        "n_layers": 6,
        "num_heads": 1,
        "weights": "xfeat-lighterglue",
    },
}
ARCH_KEYS = ("input_dim", "descriptor_dim", "n_layers", "num_heads", "add_scale_ori")
MP_VALUES = (False, True, None, "float16", "bfloat16")


def resolve(conf, default: Mapping) -> tuple[dict, str | None]:
    """Architecture (the :data:`ARCH_KEYS`) and weights from ``features`` / ``weights``.

    A features preset fixes the architecture; an explicit conf value that differs from
    both the default and the preset is an error (never silently overridden).
    """
    arch = {k: conf[k] for k in ARCH_KEYS}
    features, weights = conf.features, conf.weights
    if features is not None and features not in FEATURES:
        raise ConfigError(
            f"LightGlue: unknown features {features!r}; known: {', '.join(FEATURES)}."
        )
    if isinstance(weights, str) and weights in FEATURES:
        if features not in (None, weights):
            raise ConfigError(
                f"LightGlue: weights {weights!r} do not fit features {features!r}."
            )
        features = weights
    if features is not None:
        preset = FEATURES[features]
        for k in ARCH_KEYS:
            want = preset.get(k, default[k])
            if arch[k] not in (default[k], want):
                raise ConfigError(
                    f"LightGlue: {k}={arch[k]} contradicts features={features!r} "
                    f"({k}={want})."
                )
            arch[k] = want
        if weights is None or weights == features:
            weights = preset["weights"]
    return arch, weights


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_ranges(conf, arch: dict) -> None:
    """Range checks of the config (ConfigError naming the key and the valid range)."""

    def bad(key: str, value, why: str):
        raise ConfigError(f"LightGlue: {key}={value!r} is out of range: {why}.")

    for key in ("input_dim", "descriptor_dim", "n_layers", "num_heads"):
        if not _is_int(arch[key]) or arch[key] < 1:
            bad(key, arch[key], "must be an integer >= 1")
    d, h = arch["descriptor_dim"], arch["num_heads"]
    if d % h or (d // h) % 2:
        bad(
            "descriptor_dim",
            d,
            f"must be a multiple of 2 * num_heads = {2 * h} (rotary encoding pairs "
            "the features of each head)",
        )
    if not isinstance(arch["add_scale_ori"], bool):
        bad("add_scale_ori", arch["add_scale_ori"], "must be true or false")
    ft = conf.filter_threshold
    if isinstance(ft, bool) or not isinstance(ft, int | float) or not 0 <= ft <= 1:
        bad("filter_threshold", ft, "a matching score threshold must be in [0, 1]")
    for key in ("depth_confidence", "width_confidence"):
        v = conf[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            bad(key, v, "must be -1 (off) or in (0, 1]")
        if v != -1 and not 0 < v <= 1:
            bad(key, v, "must be -1 (off) or in (0, 1]")
    if conf.mp not in MP_VALUES:
        bad("mp", conf.mp, "must be true, false, 'float16' or 'bfloat16'")
    if not isinstance(conf.flash, bool):
        bad("flash", conf.flash, "must be true or false (it has no effect)")
    loss = conf.loss
    if loss.fn != "nll":
        raise ConfigError(f"LightGlue: unknown loss.fn {loss.fn!r} (only 'nll').")
    nb = loss.nll_balancing
    if isinstance(nb, bool) or not isinstance(nb, int | float) or not 0 <= nb <= 1:
        bad("loss.nll_balancing", nb, "must be in [0, 1]")


def requires(arch: dict) -> dict:
    """What the model needs from the extractor (contract of TwoViewPipeline)."""
    return {
        "descriptor_dim": int(arch["input_dim"]),
        "scales": bool(arch["add_scale_ori"]),
        "orientations": bool(arch["add_scale_ori"]),
    }


def official_state(state, n_layers: int, source: str) -> tuple[dict, tuple[str, ...]]:
    """A loaded file's matcher state dict with official names, and the keys to skip.

    Accepts a state dict, a training checkpoint (``{"model": state}``) and a ``matcher.``
    prefixed state (LighterGlue, training checkpoints).
    """
    if isinstance(state, Mapping) and "model" in state:
        if not torch.is_tensor(state["model"]):
            state = state["model"]  # training checkpoint
    if not isinstance(state, Mapping):
        raise ConfigError(f"Weights {source} are not a state dict ({type(state)}).")
    state = dict(state)
    if any(k.startswith("matcher.") for k in state):
        state = {k[8:]: v for k, v in state.items() if k.startswith("matcher.")}
    renamed = {
        re.sub(r"^(self_attn|cross_attn)\.(\d+)\.", r"transformers.\2.\1.", k): v
        for k, v in state.items()
    }
    ignore = tuple(f"log_assignment.{i}.r" for i in range(n_layers))
    stray = [k for k in ignore if k in renamed and renamed[k].numel() != 1]
    if stray:
        raise ConfigError(f"Weights {source}: {stray} are not the known stray scalars.")
    return renamed, ignore


def load_file(weights) -> tuple[object, str]:
    """The raw contents of a registered weights name or a file path, and its label."""
    from ....weights import load_weights  # the weights layer is needed only here

    return load_weights(str(weights)), str(weights)
