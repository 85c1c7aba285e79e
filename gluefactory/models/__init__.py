"""Models by name: ``get_model("matchers.lightglue")``, ``get_model("extractors.aliked")``.

Names are module paths relative to ``gluefactory.models`` or to its ``extractors`` and
``matchers`` and ``lines`` subpackages (a subpackage listed in ``SEARCH`` that does not
exist is skipped), or any importable dotted module path for models that live
outside the package. Upstream glue-factory's names resolve through :data:`ALIASES`.
``python -m gluefactory models aliases`` lists both.
"""

from __future__ import annotations

from ..utils.errors import ConfigError
from ..utils.registry import Alias, existing_packages, list_names, load_class
from .base_model import BaseModel

#: packages a model name is looked up in (absent ones are skipped: optional plug-ins)
SEARCH = [
    "gluefactory.models",
    "gluefactory.models.extractors",
    "gluefactory.models.matchers",
    "gluefactory.models.lines",
    # parts above models that define models, by their path in the package
    # (``deploy.onnx``: exported graphs run by onnxruntime)
    "gluefactory",
]


def _odd_window_to_radius(window: int) -> int:
    """kornia's NMS window (odd side, e.g. 5) -> our radius r of a (2 r + 1) window."""
    if not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ConfigError(
            f"extractors.disk_kornia: nms_window_size must be an odd positive int, "
            f"got {window!r}."
        )
    return (window - 1) // 2


#: The one alias table: upstream glue-factory's model names -> ours (docs/architecture.md)
ALIASES: dict[str, Alias] = {
    "matchers.lightglue_pretrained": Alias(
        target="matchers.lightglue",
        source="upstream glue-factory: the pip lightglue package, with its defaults",
        defaults={
            "features": "superpoint",
            "depth_confidence": 0.95,
            "width_confidence": 0.99,
            "filter_threshold": 0.1,
            "flash": True,
        },
    ),
    "matchers.nearest_neighbor_matcher": Alias(
        target="matchers.nearest_neighbor",
        source="upstream glue-factory: same keys",
    ),
    "extractors.disk_kornia": Alias(
        target="extractors.disk",
        source="upstream glue-factory: kornia's DISK",
        renamed={"nms_window_size": ("nms_radius", _odd_window_to_radius)},
        values={"weights": {"depth": "disk-depth"}},
        dropped={
            "chunk": "images per U-Net call: memory only, results are the same",
            "pad_if_not_divisible": "images are always padded to a multiple of 16",
        },
    ),
}


def get_model(name: str) -> type[BaseModel]:
    """The model class registered as ``name`` (or an alias of :data:`ALIASES`)."""
    return load_class(name, BaseModel, SEARCH, "model", aliases=ALIASES)


def list_models() -> list[str]:
    """Names of the models shipped with the package (and with ``gluefactory_nonfree``)."""
    names = list_names(BaseModel, SEARCH, "model")
    nonfree = (
        list_names(BaseModel, ["gluefactory_nonfree"], "model")
        if existing_packages(["gluefactory_nonfree"])
        else []
    )
    return names + [f"gluefactory_nonfree.{n}" for n in nonfree]


def list_aliases() -> list[str]:
    """``alias -> target (source)`` lines of :data:`ALIASES`."""
    return [f"{k} -> {a.target} ({a.source})" for k, a in sorted(ALIASES.items())]


__all__ = ["ALIASES", "BaseModel", "get_model", "list_aliases", "list_models"]
