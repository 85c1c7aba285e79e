"""Find components by name, and resolve the names of upstream glue-factory.

A component lives in a module and is the unique subclass of its base class defined there
(or the module's ``__main_<kind>__`` attribute when it defines several). A name is tried
under each of the search packages that exist (``matchers.lightglue`` ->
``gluefactory.models.matchers.lightglue``; a search package that is absent is skipped
explicitly) and as given (``mypackage.my_matcher``: external code plugs in by dotted
module path).

An :class:`Alias` maps another name (upstream glue-factory's, e.g.
``matchers.lightglue_pretrained``) to one of ours. It may carry upstream's default
differences and translate known upstream-only keys (renamed, value-mapped, or dropped
with a logged warning naming each); any other unknown key is still an error. The alias
tables live next to the search packages (``gluefactory.models.ALIASES``).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .conf import ConfigError, to_conf

logger = logging.getLogger(__name__)

T = TypeVar("T")


def package_exists(name: str) -> bool:
    """Whether the (sub)package ``name`` can be imported (its parents are imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def existing_packages(search: list[str]) -> list[str]:
    """The search packages that exist; the others are skipped (e.g. optional plug-ins)."""
    return [pkg for pkg in search if package_exists(pkg)]


def _candidates(name: str, search: list[str]) -> list[str]:
    return [f"{pkg}.{name}" for pkg in existing_packages(search)] + [name]


# ---------------------------------------------------------------------------- aliases


@dataclass(frozen=True)
class Alias:
    """Another name of a component (e.g. upstream glue-factory's) and how to translate.

    * ``target``: our registered name.
    * ``defaults``: default values that differ under this name (keys must exist in the
      target's defaults); the user config is merged over them.
    * ``renamed``: upstream key -> (our key, value conversion or None).
    * ``values``: our key -> {upstream value: our value} (e.g. weight names).
    * ``dropped``: upstream-only key -> why it can be ignored; dropped with a logged
      warning, and only when the target does not know the key itself.
    * ``source``: where the name comes from (shown in listings).
    """

    target: str
    source: str = "upstream glue-factory"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    renamed: Mapping[str, tuple[str, Callable[[Any], Any] | None]] = field(
        default_factory=dict
    )
    values: Mapping[str, Mapping[Any, Any]] = field(default_factory=dict)
    dropped: Mapping[str, str] = field(default_factory=dict)

    def translate(self, name: str, conf: Any, known: Mapping[str, Any]) -> dict:
        """The user config written for ``name``, in our keys (``known``: our defaults)."""
        conf = dict(to_conf(conf).items()) if conf is not None else {}
        for old, (new, convert) in self.renamed.items():
            if old not in conf or old in known:
                continue
            if new in conf:
                raise ConfigError(
                    f"{name}: both '{old}' (upstream name) and '{new}' are set; "
                    f"'{old}' is translated to '{new}', give only one."
                )
            value = conf.pop(old)
            conf[new] = convert(value) if convert is not None else value
            logger.info(
                "%s: upstream key %s=%r translated to %s=%r.",
                name,
                old,
                value,
                new,
                conf[new],
            )
        for key, table in self.values.items():
            value = conf.get(key)
            if isinstance(value, str) and value in table:
                conf[key] = table[value]
                logger.info("%s: %s=%r translated to %r.", name, key, value, conf[key])
        for key, why in self.dropped.items():
            if key in conf and key not in known:
                logger.warning(
                    "%s: upstream-only key %s=%r is ignored (%s).",
                    name,
                    key,
                    conf.pop(key),
                    why,
                )
        return conf


_ALIAS_CLASSES: dict[tuple[str, type], type] = {}


def _alias_class(name: str, alias: Alias, target: type) -> type:
    """The subclass of ``target`` that stands for ``name`` (built once per process)."""
    if (name, target) not in _ALIAS_CLASSES:
        _ALIAS_CLASSES[name, target] = _make_alias_class(name, alias, target)
    return _ALIAS_CLASSES[name, target]


def _make_alias_class(name: str, alias: Alias, target: type) -> type:
    known = target.defaults() if hasattr(target, "defaults") else {}
    stray = sorted(set(alias.defaults) - set(known))
    if stray:
        raise TypeError(
            f"Alias {name} sets defaults {stray} unknown to {target.__name__}."
        )

    @classmethod
    def build_conf(cls, conf: Any = None):
        conf = alias.translate(name, conf, cls.defaults())
        return super(sub, cls).build_conf(conf)

    sub = type(
        f"{target.__name__}[{name}]",
        (target,),
        {
            "__module__": target.__module__,
            "__doc__": f"{target.__name__} under the name {name} ({alias.source}).",
            "default_conf": dict(alias.defaults),
            "build_conf": build_conf,
            "alias_name": name,
            "alias_of": target,
        },
    )
    return sub


def class_in_module(module, base: type[T], kind: str) -> type[T] | None:
    main = getattr(module, f"__main_{kind}__", None)
    if main is not None:
        return main
    classes = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, base) and c is not base and c.__module__ == module.__name__
    ]
    classes = [
        c
        for c in classes
        if not inspect.isabstract(c) and not c.__name__.startswith("_")
    ]
    if len(classes) == 1:
        return classes[0]
    if len(classes) > 1:
        raise ConfigError(
            f"Module {module.__name__} defines several {base.__name__} subclasses "
            f"({', '.join(c.__name__ for c in classes)}); set __main_{kind}__ to pick one."
        )
    return None


def load_class(
    name: str,
    base: type[T],
    search: list[str],
    kind: str,
    aliases: Mapping[str, Alias] | None = None,
) -> type[T]:
    """Import the component ``name`` (a registered name, an alias or a module path).

    An alias gives a subclass of its target (built once) whose defaults are the alias's
    and whose :meth:`build_conf` translates the alias's upstream keys first.
    """
    if not name or not isinstance(name, str):
        raise ConfigError(f"A {kind} name must be a non-empty string, got {name!r}.")
    if aliases and name in aliases:
        alias = aliases[name]
        target = load_class(alias.target, base, search, kind)
        return _alias_class(name, alias, target)
    tried = []
    for modname in _candidates(name, search):
        try:
            module = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            # Only swallow the error if it is the module we asked for that is missing.
            if e.name and (modname == e.name or modname.startswith(e.name + ".")):
                tried.append(modname)
                continue
            raise
        cls = class_in_module(module, base, kind)
        if cls is not None:
            return cls
        tried.append(f"{modname} (defines no {base.__name__})")
    known = list_names(base, search, kind) + sorted(aliases or {})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"Unknown {kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}. "
        f"Tried modules: {', '.join(tried)}."
    )


def list_names(base: type, search: list[str], kind: str) -> list[str]:
    """Registered names under the first search package (importing each module)."""
    root = search[0]
    if not package_exists(root):
        return []
    pkg = importlib.import_module(root)
    names, seen = [], set()
    for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{root}."):
        short = info.name[len(root) + 1 :]
        if any(part.startswith("_") for part in short.split(".")):
            continue
        try:
            module = importlib.import_module(info.name)
            cls = class_in_module(module, base, kind)
        except Exception:  # optional dependency missing: still list nothing for it
            continue
        # A component packaged as ``name/`` (class in a submodule, re-exported by the
        # package) is listed once, under the package's name.
        if cls is not None and cls not in seen:
            seen.add(cls)
            names.append(short)
    return sorted(names)
