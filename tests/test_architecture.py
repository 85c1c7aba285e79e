"""The package's layers, enforced on the import graph (docs/architecture.md).

A module may import the modules of its own top-level part (``gluefactory.models.*`` inside
``models``) and those of *lower* layers only; parts on the same layer are independent.
From lowest to highest::

    0 settings
    1 utils
    2 geometry, weights
    3 formats (one module per on-disk layout), robust_estimators, visualization
    4 models
    5 gluefactory_nonfree (a plug-in package of models)
    6 datasets
    7 experiments
    8 deploy
    9 eval
    10 everything else: the CLIs and training code (train, trainer, demo, __main__, ...)

Every import counts: module level, inside functions (lazy imports), under
``TYPE_CHECKING``. Imports by string (``importlib.import_module(name)`` in the registries)
are not edges: that is how components are found by name.

No import cycles either, between any modules (inside one part too): :func:`cycles`
lists the strongly connected components of the graph.

The checkers are pure (a module graph in, violations out); the last tests feed them
synthetic graphs (``geometry`` importing ``models``, two modules importing each other)
and show that they fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gluefactory", "gluefactory_nonfree")

LAYERS: list[tuple[str, ...]] = [
    ("settings",),
    ("utils",),
    ("geometry", "weights"),
    ("formats", "robust_estimators", "visualization"),
    ("models",),
    (
        "gluefactory_nonfree",
    ),  # a plug-in package of models, built on gluefactory.models
    ("datasets",),
    ("experiments",),  # reading training experiments (checkpoints, configs) for eval
    ("deploy",),  # exported graphs and their onnxruntime runner (a model for eval)
    ("eval",),
]
TOP = len(LAYERS)  # rank of anything not listed (CLIs, training code, the root package)


def part_of(module: str) -> str:
    """The architectural part of a dotted module name."""
    parts = module.split(".")
    if parts[0] != "gluefactory":
        return parts[0]
    return parts[1] if len(parts) > 1 else "gluefactory"


def rank(part: str) -> int:
    for i, names in enumerate(LAYERS):
        if part in names:
            return i
    return TOP


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    """(dotted module name, is a package ``__init__``) of a source file."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def imports_of(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Modules of the project imported anywhere in ``source`` (relative ones resolved)."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from . import settings`` imports a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            files[path] = module_name(path, root)
    known = {name for name, _ in files.values()}
    return {
        name: imports_of(path.read_text(encoding="utf-8"), name, is_pkg, known)
        for path, (name, is_pkg) in files.items()
    }


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer or of another part of the same layer."""
    bad = []
    for module, targets in sorted(graph.items()):
        src = part_of(module)
        for target in sorted(targets):
            dst = part_of(target)
            if dst == src:
                continue
            if target == "gluefactory" and src != "gluefactory":
                # ``import gluefactory`` (the root package) is the top layer too
                bad.append(f"{module} imports the root package gluefactory")
                continue
            if rank(dst) > rank(src) or (rank(dst) == rank(src) and rank(src) < TOP):
                bad.append(
                    f"{module} (layer {rank(src)}: {src}) imports {target} "
                    f"(layer {rank(dst)}: {dst})"
                )
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle: the strongly connected components of more than one module
    (or a module importing itself), each sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in graph:  # outside the walked sources
                    continue
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return sorted(found)


def test_the_package_respects_its_layers():
    graph = import_graph()
    assert "gluefactory.models.base_model" in graph  # the walk found the package
    assert "gluefactory.utils.data" in graph["gluefactory.models.base_model"]
    bad = violations(graph)
    assert not bad, "layer violations (docs/architecture.md):\n" + "\n".join(bad)


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_every_part_of_the_package_has_a_layer_or_is_top_level():
    """A new sub-package must be placed in LAYERS on purpose, not land on top silently."""
    top_level_ok = {
        "gluefactory",
        "__main__",
        "demo",
        "export_onnx",
        "scripts",
        "train",
        "trainer",
    }
    parts = {part_of(m) for m in import_graph()}
    unplaced = sorted(p for p in parts if rank(p) == TOP and p not in top_level_ok)
    assert not unplaced, f"place these in LAYERS (or top_level_ok): {unplaced}"


# ------------------------------------------------------------ the checker can fail


def _graph_with(extra: dict[str, set[str]]) -> dict[str, set[str]]:
    graph = {
        "gluefactory.utils.conf": {"gluefactory.utils.errors"},
        "gluefactory.geometry.homography": {"gluefactory.geometry.coordinates"},
        "gluefactory.models.base_model": {"gluefactory.utils.conf"},
    }
    graph.update(extra)
    return graph


def test_checker_accepts_downward_imports():
    assert violations(_graph_with({})) == []


@pytest.mark.parametrize(
    "module,target",
    [
        ("gluefactory.geometry.homography", "gluefactory.models.base_model"),
        ("gluefactory.utils.tensor", "gluefactory.geometry.wrappers"),
        ("gluefactory.robust_estimators.common", "gluefactory.models.base_model"),
        ("gluefactory.models.two_view_pipeline", "gluefactory.eval.metrics"),
        ("gluefactory.models.two_view_pipeline", "gluefactory.datasets.base_dataset"),
        ("gluefactory.models.two_view_pipeline", "gluefactory.trainer"),
        ("gluefactory.datasets.base_dataset", "gluefactory.eval.base"),
        ("gluefactory.datasets.base_dataset", "gluefactory.train"),
        ("gluefactory.geometry.depth", "gluefactory.weights"),  # same layer
        ("gluefactory.utils.image", "gluefactory"),  # the root package
    ],
)
def test_checker_rejects_upward_imports(module, target):
    bad = violations(_graph_with({module: {target}}))
    assert len(bad) == 1 and module in bad[0] and target in bad[0]


def test_lazy_import_inside_a_function_is_an_edge():
    """The hidden cycle this test was written for: a lazy import in a method."""
    source = (
        "def check(data):\n"
        "    from ..models.base_model import check_data_keys\n"
        "    return check_data_keys\n"
    )
    known = {"gluefactory.models.base_model", "gluefactory.geometry.utils"}
    found = imports_of(source, "gluefactory.geometry.utils", False, known)
    assert found == {"gluefactory.models.base_model"}
    assert violations({"gluefactory.geometry.utils": found})


def test_from_package_import_submodule_resolves_to_the_submodule():
    source = "from .. import settings\nfrom ..utils import conf\n"
    known = {"gluefactory.settings", "gluefactory.utils.conf", "gluefactory.weights"}
    assert imports_of(source, "gluefactory.weights", True, known) == {
        "gluefactory.settings",
        "gluefactory.utils.conf",
    }


def test_cycle_checker_accepts_a_tree():
    assert cycles(_graph_with({})) == []


@pytest.mark.parametrize(
    "extra,expected",
    [
        (  # the circle that datasets.sources had: builtin <-> download
            {
                "gluefactory.datasets.sources.builtin": {
                    "gluefactory.datasets.sources.download"
                },
                "gluefactory.datasets.sources.download": {
                    "gluefactory.datasets.sources.builtin"
                },
            },
            [["gluefactory.datasets.sources.builtin",
              "gluefactory.datasets.sources.download"]],
        ),
        (  # a longer loop through the graph's other modules
            {"gluefactory.utils.errors": {"gluefactory.models.base_model"}},
            [["gluefactory.models.base_model", "gluefactory.utils.conf",
              "gluefactory.utils.errors"]],
        ),
        (  # a module importing itself
            {"gluefactory.geometry.coordinates": {"gluefactory.geometry.coordinates"}},
            [["gluefactory.geometry.coordinates"]],
        ),
    ],
)  # fmt: skip
def test_cycle_checker_rejects_cycles(extra, expected):
    assert cycles(_graph_with(extra)) == expected
