"""Models by name: ``get_model("matchers.lightglue")``, ``get_model("extractors.aliked")``.

Names are module paths relative to ``gluefactory.models`` (or to its ``extractors``,
``matchers`` and ``lines`` subpackages), or any importable dotted module path for models
that live outside the package. ``python -m gluefactory.models`` lists them.
"""

from __future__ import annotations

from ..utils.registry import list_names, load_class
from .base_model import BaseModel

SEARCH = [
    "gluefactory.models",
    "gluefactory.models.extractors",
    "gluefactory.models.matchers",
    "gluefactory.models.lines",
]


def get_model(name: str) -> type[BaseModel]:
    """The model class registered as ``name``."""
    return load_class(name, BaseModel, SEARCH, "model")


def list_models() -> list[str]:
    """Names of the models shipped with the package (and with ``gluefactory_nonfree``)."""
    names = list_names(BaseModel, SEARCH, "model")
    try:
        nonfree = list_names(BaseModel, ["gluefactory_nonfree"], "model")
    except ImportError:  # the non-free package is optional
        nonfree = []
    return names + [f"gluefactory_nonfree.{n}" for n in nonfree]


__all__ = ["BaseModel", "get_model", "list_models"]
