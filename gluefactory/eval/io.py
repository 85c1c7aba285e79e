"""Command line of the benchmarks: arguments, config merge, results tag, overwrite guard.

Merge order (lowest to highest priority, as upstream glue-factory):

1. the benchmark's ``default_conf`` (``data``, ``model``, ``eval``);
2. with ``--checkpoint``: the experiment's config, reduced to ``model`` merged with its
   ``benchmarks.<benchmark>`` section;
3. with ``--conf``: the config file, reduced the same way (its top-level ``data``,
   ``train`` and ``eval`` are for training and are ignored);
4. the dotlist overrides (``eval.ransac_th=-1``).

Every level is checked strictly: unknown top-level keys, unknown keys of a
``benchmarks.<benchmark>`` section and (when the benchmark is built) unknown keys of
``eval`` and of the components' sections are errors naming the key.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..utils.conf import as_plain, load_conf, parse_dotlist, resolve_conf_path
from ..utils.errors import ConfigError

SECTIONS = ("data", "model", "eval")
#: top-level keys a --conf file may hold (training configs carry data, data_val, train
#: and eval too: ignored here, as upstream)
CONF_FILE_KEYS = ("model", "benchmarks", "data", "data_val", "train", "eval")


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """The flags shared by every benchmark CLI (upstream's names)."""
    parser.add_argument(
        "--conf",
        default=None,
        help="Shipped config name (python -m gluefactory configs) or path to a YAML file.",
    )
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="Experiment name under <outputs>/training/ or a checkpoint file.",
    )
    parser.add_argument(
        "--tag",
        default=None,
        help="Name of the results folder (default: from the config).",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Re-export the predictions (rerun the model) and re-evaluate.",
    )
    parser.add_argument(
        "--overwrite_eval",
        action="store_true",
        help="Re-evaluate from the cached predictions (eval.* changed).",
    )
    parser.add_argument(
        "--plot", action="store_true", help="Show the figures (they are always saved)."
    )
    parser.add_argument(
        "dotlist", nargs="*", help="Overrides such as eval.ransac_th=-1."
    )


def parse_eval_args(prog: str, argv: list[str] | None, doc: str | None = None):
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_eval_args(parser)
    return parser.parse_intermixed_args(argv)


def _check_keys(conf: Mapping, allowed: Iterable[str], where: str) -> None:
    allowed = tuple(allowed)
    bad = [str(k) for k in conf.keys() if k not in allowed]
    if bad:
        raise ConfigError(
            f"Unknown key(s) {', '.join(repr(b) for b in bad)} in {where}; "
            f"allowed: {', '.join(allowed)}."
        )


def reduce_conf(conf: DictConfig, benchmark: str, where: str) -> DictConfig:
    """``{model: conf.model}`` merged with ``conf.benchmarks.<benchmark>``."""
    _check_keys(conf, CONF_FILE_KEYS, where)
    conf = OmegaConf.create(as_plain(conf))  # resolve interpolations first
    out = OmegaConf.create({"model": conf.get("model") or {}})
    bench = (conf.get("benchmarks") or {}).get(benchmark)
    if bench is not None:
        _check_keys(bench, SECTIONS, f"{where}: benchmarks.{benchmark}")
        out = OmegaConf.merge(out, bench)
    return out


def checkpoint_conf(checkpoint: str) -> DictConfig:
    """The config of a training experiment (name or checkpoint file)."""
    experiments = _experiments_module()
    return experiments.experiment_conf(checkpoint)


def _experiments_module():
    """``gluefactory.experiments``, looked up in ``sys.modules`` (tests replace it)."""
    import importlib

    return importlib.import_module("gluefactory.experiments")


def eval_conf_layers(
    benchmark: str,
    conf: str | None = None,
    checkpoint: str | None = None,
    dotlist: list[str] | None = None,
) -> list[tuple[str, DictConfig]]:
    """The user layers of a benchmark config, lowest priority first, each with where
    it came from (``"the config of checkpoint EXP"``, ``"--conf PATH"``, ``"the
    command line"``), so that an error can say who typed a key."""
    layers = []
    if checkpoint:
        layers.append(
            (
                f"the config of checkpoint {checkpoint}",
                reduce_conf(
                    checkpoint_conf(checkpoint), benchmark, f"checkpoint {checkpoint}"
                ),
            )
        )
    if conf:
        path = resolve_conf_path(conf)
        where = f"--conf {path}"
        layers.append((where, reduce_conf(load_conf(conf), benchmark, where)))
    if dotlist:
        cli = parse_dotlist(dotlist)
        _check_keys(cli, SECTIONS, "the command-line overrides")
        layers.append(("the command line", cli))
    return layers


def compose_eval_conf(
    benchmark: str,
    conf: str | None = None,
    checkpoint: str | None = None,
    dotlist: list[str] | None = None,
) -> DictConfig:
    """The user part of a benchmark config (merged over the defaults by the benchmark)."""
    layers = [c for _, c in eval_conf_layers(benchmark, conf, checkpoint, dotlist)]
    return OmegaConf.merge({}, *layers) if layers else OmegaConf.create({})


#: the keys a ConfigError blames: unknown keys (``  - 'key'.``) and shape mismatches
_BLAMED = re.compile(r"^\s+- '([^']+)'\.|'([^']+)' is a (?:section|value)", re.M)


def key_origins(message: str, layers: list[tuple[str, Any]]) -> str:
    """Where each key that ``message`` blames was set (the last layer setting it wins),
    e.g. ``model.matcher.n_layers: from the config of checkpoint EXP``; empty when
    there is at most one layer or no blamed key is found in any layer."""
    if len(layers) < 2:
        return ""
    blamed = {a or b for a, b in _BLAMED.findall(message)}
    origin: dict[str, str] = {}
    for label, layer in layers:
        for key in flatten(OmegaConf.to_container(layer, resolve=False)):
            origin[key] = label
    lines = [
        f"  {full}: from {label}"
        for full, label in sorted(origin.items())
        if any(full == b or full.endswith("." + b) for b in blamed)
    ]
    if not lines:
        return ""
    text = "\nWhere these keys come from:\n" + "\n".join(lines)
    if any(": from the config of checkpoint" in line for line in lines):
        text += (
            "\n(the checkpoint's model config is the base that --conf and the command "
            "line override; to evaluate another model, leave out --checkpoint)"
        )
    return text


_SAFE = re.compile(r"[^A-Za-z0-9._+=,@%-]")
MAX_TAG = 120


def override_key(item: str) -> str:
    return item.split("=", 1)[0].strip()


def default_tag(
    conf: str | None,
    checkpoint: str | None,
    dotlist: list[str] | None,
    ignore: Iterable[str] = (),
) -> str:
    """Results folder name: config stem / checkpoint name + the result-changing overrides.

    Unlike upstream (where ``--conf X eval.ransac_th=2`` and ``--conf X`` share one
    folder), every override that changes results is part of the tag, so two different
    runs never collide; overrides of keys in ``ignore`` (worker counts) are not.
    """
    parts = []
    if checkpoint:
        parts.append(
            Path(str(checkpoint)).stem
            if str(checkpoint).endswith(".tar")
            else str(checkpoint)
        )
    if conf:
        parts.append(Path(str(conf)).name.removesuffix(".yaml"))
    base = "+".join(parts) if parts else "default"
    ignore = set(ignore)
    items = [d for d in (dotlist or []) if override_key(d) not in ignore]
    tag = base + ("_" + ",".join(items) if items else "")
    tag = _SAFE.sub("-", tag)
    if len(tag) > MAX_TAG:
        digest = hashlib.sha256(tag.encode()).hexdigest()[:10]
        tag = f"{tag[: MAX_TAG - 11]}~{digest}"
    return tag


def check_tag(tag: str) -> str:
    if not tag or tag in (".", "..") or "/" in tag or "\\" in tag:
        raise ConfigError(f"--tag {tag!r} must be a plain folder name (no '/').")
    return tag


def flatten(conf: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    if isinstance(conf, Mapping):
        if not conf and prefix:
            out[prefix[:-1]] = {}
        for k, v in conf.items():
            out.update(flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = conf
    return out


def conf_diff(old: Mapping, new: Mapping, ignore: Iterable[str] = ()) -> list[str]:
    """Dotted keys whose values differ between two plain configs (``ignore`` skipped)."""
    a, b = flatten(old), flatten(new)
    ignore = tuple(ignore)
    keys = sorted(set(a) | set(b))
    return [
        k
        for k in keys
        if a.get(k, "<absent>") != b.get(k, "<absent>")
        and not any(k == i or k.startswith(i + ".") for i in ignore)
    ]
