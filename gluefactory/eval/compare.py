"""Compare benchmark runs: one table (a column per run) and all recall curves in one figure.

    python -m gluefactory.eval.compare aliked+lightglue-official xfeat+lighterglue-official
    python -m gluefactory.eval.compare outputs/results/hpatches/a outputs/results/hpatches/b
    python -m gluefactory.eval.compare --benchmark megadepth1500 run1 run2 --output cmp.png

Each argument is a results folder (holding ``summaries.json``) or a tag, looked up as
``<outputs>/results/<benchmark>/<tag>`` (in every benchmark unless ``--benchmark`` is
given; a tag found in several benchmarks must be disambiguated). Rows are the summary
keys of the benchmark (upstream names in the last column); the figure shows, per error
key with AUC thresholds (``H_error_ransac``, ``H_error_dlt``, ``rel_pose_error``), the
recall curve of every run. Runs of different benchmarks (HPatches and MegaDepth-1500)
are never put in one table: each benchmark gets its own table and figure.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .. import settings
from ..utils.cli import main_wrapper
from ..utils.errors import ConfigError, DataError
from ..utils.fs import check_output_file
from .figures import recall_figure
from .metrics import AUC_METRICS
from .results import read_json, read_results
from .tables import format_table


def resolve_run(arg: str, benchmark: str | None = None) -> tuple[str, Path]:
    """(benchmark name, results folder) of a folder path or a tag."""
    path = Path(arg).expanduser()
    if (path / "summaries.json").is_file():
        return path.parent.name, path
    root = settings.eval_root()
    benches = (
        [benchmark]
        if benchmark
        else sorted(p.name for p in root.glob("*") if p.is_dir())
    )
    found = [
        (b, root / b / arg)
        for b in benches
        if (root / b / arg / "summaries.json").is_file()
    ]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ConfigError(
            f"Tag {arg!r} exists in several benchmarks ({', '.join(b for b, _ in found)}): "
            "pass --benchmark NAME or a folder path."
        )
    raise DataError(
        f"No results for {arg!r}: neither a folder with summaries.json nor a tag under "
        f"{root}/{benchmark or '<benchmark>'}/. Run the benchmark first."
    )


def short_labels(labels: list[str]) -> list[str]:
    """Drop the overrides all runs share (``a_x=1`` and ``b_x=1`` -> ``a``, ``b``)."""
    if len(labels) < 2:
        return labels
    suffix = os.path.commonprefix([lb[::-1] for lb in labels])[::-1]
    cut = suffix.find("_")  # cut at an override boundary only
    if cut < 0:
        return labels
    short = [lb[: len(lb) - len(suffix) + cut] for lb in labels]
    return short if all(short) and len(set(short)) == len(short) else labels


def _reported(benchmark: str) -> list[tuple[str, str]]:
    try:
        from .base import get_benchmark

        cls = get_benchmark(benchmark)
        return [*getattr(cls, "reported", []), *getattr(cls, "optional_reported", [])]
    except ConfigError:  # an external or renamed benchmark: show every key
        return []


def compare(
    runs: list[str], benchmark: str | None = None, output: Path | None = None
) -> tuple[str, list[Path]]:
    """The comparison tables (text) and the paths of the recall figures.

    Runs of different benchmarks are never mixed: one table and one figure per
    benchmark, in the order of first appearance, each table titled with its benchmark
    (``output`` then gets the benchmark's name before its suffix)."""
    if not runs:
        raise ConfigError("Pass at least one results folder or tag.")
    if output is not None:
        check_output_file(output, "--output", ".png")
    groups: dict[str, list[Path]] = {}
    for bench, path in (resolve_run(r, benchmark) for r in runs):
        groups.setdefault(bench, []).append(path)
    texts, figures = [], []
    for bench, paths in groups.items():
        out = output
        if output is not None and len(groups) > 1:
            out = output.with_name(f"{output.stem}_{bench}{output.suffix or '.png'}")
        table, fig = _compare_one(bench, paths, out)
        runs_text = f"{len(paths)} run{'s' * (len(paths) > 1)}"
        texts.append(table if len(groups) == 1 else f"{bench} ({runs_text}):\n{table}")
        figures += [fig] if fig else []
    return "\n\n".join(texts), figures


def _compare_one(
    bench: str, paths: list[Path], output: Path | None
) -> tuple[str, Path | None]:
    """The table and the recall figure of runs of one benchmark."""
    labels: list[str] = []
    for p in paths:
        label = p.name
        labels.append(label if label not in labels else f"{p.parent.name}/{label}")
    labels = short_labels(labels)
    summaries = [read_json(p / "summaries.json") for p in paths]
    reported = _reported(bench)
    keys = [(k, up) for k, up in reported if any(k in s for s in summaries)]
    if not keys:  # unknown benchmark: every key of the first run
        keys = [(k, "") for k in summaries[0]]
    rows = []
    for k, up in keys:
        vals = [s.get(k) for s in summaries]
        rows.append([k, *(_fmt(v) for v in vals), up])
    table = format_table(["metric", *labels, "upstream key"], rows)

    curves: dict[str, dict[str, list[float]]] = {}
    for label, p in zip(labels, paths, strict=True):
        if not (p / "results.h5").is_file():
            continue
        res = read_results(p / "results.h5")
        for key in AUC_METRICS:
            if key in res:
                curves.setdefault(key, {})[label] = list(res[key])
    if not curves:
        return table, None
    panels = [
        (errs, AUC_METRICS[key][0], key, f"{key} [{AUC_METRICS[key][1]}]")
        for key, errs in curves.items()
    ]
    name = f"{bench}_{'_vs_'.join(labels)}"[:150] + ".png"
    return table, recall_figure(
        panels, output or settings.eval_root() / "compare" / name
    )


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if v != v else (f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}")
    return str(v)


@main_wrapper
def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m gluefactory.eval.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", help="results folders or tags")
    parser.add_argument("--benchmark", default=None, help="where to look tags up")
    parser.add_argument("--output", type=Path, default=None, help="figure path (PNG)")
    args = parser.parse_args(argv)
    table, figures = compare(args.runs, args.benchmark, args.output)
    print(table)
    if figures:
        print()
    for fig in figures:
        print(f"Recall curves: {fig}")
    return table


if __name__ == "__main__":
    main()
