"""Configuration helpers on top of OmegaConf.

Every component (model, dataset, estimator, benchmark) declares a ``default_conf``; a user
config is merged over it with :func:`merge_strict`, which rejects unknown keys with a
message naming the key, the component and the closest valid keys. Named configs shipped in
``gluefactory/configs`` are resolved by :func:`load_conf`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


from .errors import ConfigError  # noqa: E402  (re-exported: the historical import path)


def to_conf(conf: Any) -> DictConfig:
    """Turn a dict, DictConfig or None into a (mutable) DictConfig."""
    if conf is None:
        return OmegaConf.create({})
    if isinstance(conf, DictConfig):
        return conf
    if isinstance(conf, Mapping):
        return OmegaConf.create(dict(conf))
    raise ConfigError(
        f"Expected a mapping as configuration, got {type(conf).__name__}."
    )


def is_component_slot(value: Any) -> bool:
    """A default that is a mapping with a ``name`` key configures another component.

    Its content is validated by that component when it is built, not by the parent.
    """
    return isinstance(value, (Mapping, DictConfig)) and "name" in value


def unknown_keys(
    defaults: DictConfig, user: DictConfig, prefix: str = ""
) -> list[tuple[str, list[str]]]:
    """Keys of ``user`` absent from ``defaults``, as (dotted key, valid sibling keys)."""
    bad = []
    for key in user.keys():
        path = f"{prefix}{key}"
        if key not in defaults:
            bad.append((path, [str(k) for k in defaults.keys()]))
            continue
        dnode, unode = defaults._get_node(key), user._get_node(key)
        if not (isinstance(dnode, DictConfig) and isinstance(unode, DictConfig)):
            continue
        if dnode._is_none() or unode._is_none():
            continue
        if is_component_slot(dnode) or len(dnode) == 0:
            continue  # open sub-config: checked by the component it configures
        bad.extend(unknown_keys(dnode, unode, prefix=f"{path}."))
    return bad


def format_unknown(component: str, bad: list[tuple[str, list[str]]]) -> str:
    lines = [f"Unknown configuration key(s) for {component}:"]
    for key, valid in bad:
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        lines.append(f"  - '{key}'.{hint} Valid keys here: {', '.join(sorted(valid))}.")
    return "\n".join(lines)


def merge_strict(
    defaults: Any, user: Any, component: str, strict: bool = True
) -> DictConfig:
    """Merge ``user`` over ``defaults``; unknown keys raise :class:`ConfigError`.

    Sub-configs whose default holds a ``name`` key (or is an empty mapping) are open: they
    configure another component that validates them itself.
    """
    defaults, user = to_conf(defaults), to_conf(user)
    if strict:
        bad = unknown_keys(defaults, user)
        if bad:
            raise ConfigError(format_unknown(component, bad))
    merged = OmegaConf.merge(defaults, user)
    return merged


def freeze(conf: DictConfig) -> DictConfig:
    """Make a config read-only and struct (reading an unknown key raises)."""
    OmegaConf.set_struct(conf, True)
    OmegaConf.set_readonly(conf, True)
    return conf


# ---------------------------------------------------------------------------------------
# Named configs shipped with the package


def _config_files() -> dict[str, Any]:
    root = resources.files("gluefactory") / "configs"
    found: dict[str, Any] = {}

    def walk(node, prefix=""):
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(".yaml"):
                stem = child.name[: -len(".yaml")]
                found.setdefault(stem, child)
                found[f"{prefix}{stem}"] = child

    if root.is_dir():
        walk(root)
    return found


def list_confs() -> list[str]:
    """Names of the configs shipped in ``gluefactory/configs`` (file stems)."""
    return sorted(k for k in _config_files() if "/" not in k)


def resolve_conf_path(name_or_path: str | Path) -> Path | Any:
    """A shipped config name (e.g. ``aliked+lightglue-official``) or a path to a YAML file."""
    name = str(name_or_path)
    files = _config_files()
    key = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if key in files and not Path(name).is_file():
        return files[key]
    path = Path(name).expanduser()
    if path.is_file():
        return path
    known = list_confs()
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"No config named or at '{name}'.{hint} Pass a path to a YAML file or one of the "
        f"shipped configs: {', '.join(known) or '(none)'}."
    )


def load_conf(name_or_path: str | Path) -> DictConfig:
    """Load a shipped config by name or a YAML file by path."""
    path = resolve_conf_path(name_or_path)
    try:
        conf = OmegaConf.create(path.read_text())
    except Exception as e:  # yaml errors: name the file
        raise ConfigError(f"Could not parse config {path}: {e}") from e
    if not isinstance(conf, DictConfig):
        raise ConfigError(
            f"Config {path} must be a mapping, got {type(conf).__name__}."
        )
    return conf


def parse_dotlist(dotlist: list[str]) -> DictConfig:
    """``["a.b=1", "c=x"]`` -> config, with a clear error on malformed items."""
    for item in dotlist:
        if "=" not in item:
            raise ConfigError(
                f"Override '{item}' is not of the form key=value (e.g. model.matcher.depth_confidence=0.95)."
            )
    return OmegaConf.from_dotlist(list(dotlist))


def compose(
    name_or_path: str | Path | None, dotlist: list[str] | None = None
) -> DictConfig:
    """Load ``--conf`` (name or path, optional) and apply dotlist overrides over it."""
    conf = load_conf(name_or_path) if name_or_path else OmegaConf.create({})
    if dotlist:
        conf = OmegaConf.merge(conf, parse_dotlist(dotlist))
    return conf


def as_plain(conf: Any) -> Any:
    """A DictConfig/ListConfig as plain Python containers (resolved)."""
    if isinstance(conf, (DictConfig, ListConfig)):
        return OmegaConf.to_container(conf, resolve=True)
    return conf
