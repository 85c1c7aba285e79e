"""Configuration helpers on top of OmegaConf.

Every configurable class (model, dataset, estimator, benchmark, image preprocessor) derives
from :class:`Configurable`: the ``default_conf`` of every class in its MRO is merged base ->
subclass, the user config over that with :func:`merge_strict` (unknown keys rejected at
every nesting level, with the closest valid keys), and the result is frozen. Named configs
shipped in ``gluefactory/configs`` are resolved by :func:`load_conf`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ConfigError  # re-exported: the historical import path


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
    defaults: DictConfig,
    user: DictConfig,
    prefix: str = "",
    open_keys: Iterable[str] = (),
    empty_open: bool = True,
) -> list[tuple[str, list[str]]]:
    """Keys of ``user`` absent from ``defaults``, as (dotted key, valid sibling keys).

    A sub-section is not descended into (it is open) when its default is a component slot
    (:func:`is_component_slot`), when its dotted path is in ``open_keys``, or, with
    ``empty_open``, when its default is an empty mapping.
    """
    open_keys = set(open_keys)
    bad = []
    for key in user.keys():
        path = f"{prefix}{key}"
        if key not in defaults:
            bad.append((path, [str(k) for k in defaults.keys()]))
            continue
        if path in open_keys:
            continue
        dnode, unode = defaults._get_node(key), user._get_node(key)
        if not (isinstance(dnode, DictConfig) and isinstance(unode, DictConfig)):
            continue
        if dnode._is_none() or unode._is_none():
            continue
        if is_component_slot(dnode) or (empty_open and len(dnode) == 0):
            continue  # open sub-config: checked by the component it configures
        bad.extend(
            unknown_keys(dnode, unode, f"{path}.", open_keys, empty_open=empty_open)
        )
    return bad


def shape_mismatches(
    defaults: DictConfig, user: DictConfig, prefix: str = "", open_keys=()
) -> list[str]:
    """A value given for a section or a section for a value (``null`` fits both)."""
    bad = []
    for key in user.keys():
        path = f"{prefix}{key}"
        if key not in defaults or path in open_keys:
            continue
        dnode, unode = defaults._get_node(key), user._get_node(key)
        if dnode._is_none() or unode._is_none() or dnode._is_missing():
            continue
        dsec, usec = isinstance(dnode, DictConfig), isinstance(unode, DictConfig)
        if dsec and not usec:
            keys = ", ".join(map(str, dnode.keys()))
            what = f"a section (keys: {keys})" if keys else "a section"
            got = as_plain(unode) if isinstance(unode, ListConfig) else unode._value()
            bad.append(f"'{path}' is {what}, got {got!r}")
        elif usec and not dsec:
            bad.append(
                f"'{path}' is a value (default {dnode._value()!r}), got a section"
            )
        elif dsec and not is_component_slot(dnode):
            bad.extend(shape_mismatches(dnode, unode, f"{path}.", open_keys))
    return bad


def format_unknown(component: str, bad: list[tuple[str, list[str]]]) -> str:
    lines = [f"Unknown configuration key(s) for {component}:"]
    for key, valid in bad:
        leaf = key.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        valid_str = ", ".join(sorted(valid)) or "(none)"
        lines.append(f"  - '{key}'.{hint} Valid keys here: {valid_str}.")
    return "\n".join(lines)


def merge_strict(
    defaults: Any,
    user: Any,
    component: str,
    strict: bool = True,
    open_keys: Iterable[str] = (),
    empty_open: bool = True,
) -> DictConfig:
    """Merge ``user`` over ``defaults``; unknown keys raise :class:`ConfigError`.

    Sub-configs whose default holds a ``name`` key, whose dotted path is in ``open_keys``
    or (with ``empty_open``, the default of this free function; :class:`Configurable`
    turns it off) whose default is an empty mapping are open: they configure another
    component that validates them itself.
    """
    defaults, user = to_conf(defaults), to_conf(user)
    if strict:
        bad = unknown_keys(defaults, user, open_keys=open_keys, empty_open=empty_open)
        if bad:
            raise ConfigError(format_unknown(component, bad))
        wrong = shape_mismatches(defaults, user, open_keys=open_keys)
        if wrong:
            raise ConfigError(
                f"Invalid configuration for {component}: " + "; ".join(wrong) + "."
            )
    try:
        return OmegaConf.merge(defaults, user)
    except OmegaConfBaseException as e:  # e.g. a section given for a value
        raise ConfigError(f"Invalid configuration for {component}: {e}") from e


def freeze(conf: DictConfig) -> DictConfig:
    """Make a config read-only and struct (reading an unknown key raises)."""
    OmegaConf.set_struct(conf, True)
    OmegaConf.set_readonly(conf, True)
    return conf


# ---------------------------------------------------------------------------------------
# The config mixin of every configurable class


def _plain(conf: Any, owner: type, attr: str) -> dict:
    """A class's declared defaults as a plain dict (interpolations kept)."""
    if conf is None:
        return {}
    if isinstance(conf, DictConfig):
        return OmegaConf.to_container(conf, resolve=False)
    if isinstance(conf, Mapping):
        return OmegaConf.to_container(OmegaConf.create(dict(conf)), resolve=False)
    raise TypeError(
        f"{owner.__qualname__}.{attr} must be a mapping, got {type(conf).__name__}."
    )


def _has_path(tree: dict, dotted: str) -> bool:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


class Configurable:
    """Owns the configuration of a class: declared defaults, strict merge, freezing.

    * ``default_conf`` (class attribute): this class's defaults. The defaults of a class
      are those of every class in its MRO merged base -> subclass (a subclass only lists
      what it adds or changes); :attr:`base_default_conf` holds what the parents
      contribute, :meth:`defaults` the whole.
    * The user config is merged over the defaults; a key unknown at any nesting level is
      a :class:`ConfigError` naming it, the class and the closest valid keys.
    * Open sections, whose keys are not checked here: a default that is a mapping with a
      ``name`` key (a component slot: the component it names validates it when built),
      and the dotted paths listed in the class attribute ``open_conf_keys`` (accumulated
      over the MRO, e.g. ``("options",)``). Nothing else is open: an empty default mapping
      accepts no keys.
    * :meth:`build_conf` returns the merged, checked, frozen (read-only, struct) config
      without constructing anything; constructors store it as ``self.conf``.
      :meth:`check_conf` is the hook for value checks (ranges, choices) at that time.
    * ``strict_conf = False`` turns key checking off for a class (discouraged: it lets
      typos through; list the open sections instead).

    Compatibility: a class may still declare ``base_default_conf`` in its body (the
    upstream dataset idiom); it is merged just below that class's ``default_conf``.
    """

    default_conf: ClassVar[dict[str, Any]] = {}
    open_conf_keys: ClassVar[tuple[str, ...]] = ()
    strict_conf: ClassVar[bool] = True
    base_default_conf: ClassVar[dict[str, Any]] = {}
    _declared_base_conf: ClassVar[dict[str, Any] | None] = None
    _all_defaults: ClassVar[dict[str, Any]] = {}
    _all_open_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        own = vars(cls)
        declared = own.get("base_default_conf")
        cls._declared_base_conf = (
            _plain(declared, cls, "base_default_conf") if declared is not None else None
        )
        parents: dict[str, Any] = {}
        open_keys: list[str] = []
        for klass in reversed(cls.__mro__):
            if not (isinstance(klass, type) and issubclass(klass, Configurable)):
                continue
            layers = [vars(klass).get("_declared_base_conf")]
            if klass is not cls:
                layers.append(vars(klass).get("default_conf"))
            for layer in layers:
                if layer:
                    parents = OmegaConf.to_container(
                        OmegaConf.merge(parents, _plain(layer, klass, "default_conf")),
                        resolve=False,
                    )
            for key in vars(klass).get("open_conf_keys", ()):
                if key not in open_keys:
                    open_keys.append(str(key))
        cls.base_default_conf = parents
        cls._all_defaults = OmegaConf.to_container(
            OmegaConf.merge(
                parents, _plain(own.get("default_conf"), cls, "default_conf")
            ),
            resolve=False,
        )
        cls._all_open_keys = tuple(open_keys)
        missing = [k for k in open_keys if not _has_path(cls._all_defaults, k)]
        if missing:
            raise TypeError(
                f"{cls.__qualname__}.open_conf_keys names keys absent from its defaults: "
                f"{', '.join(missing)}."
            )

    @classmethod
    def defaults(cls) -> DictConfig:
        """The merged defaults of the class (a fresh, mutable copy)."""
        return OmegaConf.create(cls._all_defaults)

    @classmethod
    def build_conf(cls, conf: Any = None) -> DictConfig:
        """The user ``conf`` merged over the defaults, checked, and frozen.

        Constructs nothing (no weights, no files): use it to validate a config early.
        """
        merged = merge_strict(
            cls.defaults(),
            to_conf(conf),
            component=cls.__name__,
            strict=cls.strict_conf,
            open_keys=cls._all_open_keys,
            empty_open=False,
        )
        freeze(merged)
        cls.check_conf(merged)
        return merged

    @classmethod
    def check_conf(cls, conf: DictConfig) -> None:
        """Value checks on the merged, frozen config; raise :class:`ConfigError`."""


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
    if path.is_dir():
        raise ConfigError(
            f"--conf {name} is a directory, expected a config file (a YAML file or a "
            "shipped config name: python -m gluefactory configs)."
        )
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
    try:
        return OmegaConf.from_dotlist(list(dotlist))
    except (OmegaConfBaseException, yaml.YAMLError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"Overrides {' '.join(dotlist)}: cannot be parsed ({first})."
        ) from e


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
