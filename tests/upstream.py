"""Upstream glue-factory's modules for the parity tests (``*_upstream.py``), skipped
without ``GLUEFACTORY_UPSTREAM``, a checkout of github.com/cvg/glue-factory (e.g. the
``glue-factory`` folder made by ``build_peer.sh``). The modules load with our torch
under the private package name ``upstream_gf``; upstream's two package ``__init__``
files that import all of it (``gluefactory`` and ``gluefactory.models``) are skipped."""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

import pytest

UPSTREAM = os.environ.get("GLUEFACTORY_UPSTREAM")
needs_upstream = pytest.mark.skipif(
    not UPSTREAM,
    reason="GLUEFACTORY_UPSTREAM (an upstream glue-factory checkout) unset",
)


def upstream_module(name: str) -> types.ModuleType:
    """Upstream's ``gluefactory.<name>`` (e.g. ``geometry.gt_generation``)."""
    src = Path(UPSTREAM) / "gluefactory"
    if not (src / (name.replace(".", "/") + ".py")).is_file():
        raise FileNotFoundError(
            f"GLUEFACTORY_UPSTREAM={UPSTREAM}: no gluefactory/{name}"
        )
    for pkg in ("", ".models"):
        if "upstream_gf" + pkg not in sys.modules:
            mod = types.ModuleType("upstream_gf" + pkg)
            mod.__path__ = [str(src / pkg[1:])]
            sys.modules["upstream_gf" + pkg] = mod
    return importlib.import_module(f"upstream_gf.{name}")
