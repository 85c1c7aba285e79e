"""Find components by name.

A component lives in a module and is the unique subclass of its base class defined there
(or the module's ``__main_<kind>__`` attribute when it defines several). A name is tried
as given (``mypackage.my_matcher``: external code plugs in by dotted module path) and
under each of the search packages (``matchers.lightglue`` ->
``gluefactory.models.matchers.lightglue``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
from typing import TypeVar

from .conf import ConfigError

T = TypeVar("T")


def _candidates(name: str, search: list[str]) -> list[str]:
    return [f"{pkg}.{name}" for pkg in search] + [name]


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


def load_class(name: str, base: type[T], search: list[str], kind: str) -> type[T]:
    """Import the component ``name`` (a registered name or a dotted module path)."""
    if not name or not isinstance(name, str):
        raise ConfigError(f"A {kind} name must be a non-empty string, got {name!r}.")
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
    known = list_names(base, search, kind)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"Unknown {kind} '{name}'.{hint} Known: {', '.join(known) or '(none)'}. "
        f"Tried modules: {', '.join(tried)}."
    )


def list_names(base: type, search: list[str], kind: str) -> list[str]:
    """Registered names under the first search package (importing each module)."""
    root = search[0]
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
