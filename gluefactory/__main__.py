"""List what the library knows: ``python -m gluefactory [models|aliases|datasets|estimators|benchmarks|configs|weights]``.

``aliases`` are the upstream glue-factory model names that resolve to ours
(``gluefactory.models.ALIASES``, docs/architecture.md); ``estimators`` lists the
estimator aliases after the estimators.
"""

from __future__ import annotations

import argparse

from .utils.cli import main_wrapper


@main_wrapper
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gluefactory", description=__doc__)
    kinds = [
        "models",
        "aliases",
        "datasets",
        "estimators",
        "benchmarks",
        "configs",
        "weights",
    ]
    parser.add_argument(
        "what", nargs="*", help=f"any of {', '.join(kinds)} (default: all)"
    )
    args = parser.parse_args(argv)
    what = args.what or kinds
    for kind in what:
        if kind not in kinds:
            parser.error(f"unknown kind '{kind}', choose from {', '.join(kinds)}")
    for kind in what:
        if kind == "models":
            from .models import list_models

            items = list_models()
        elif kind == "aliases":
            from .models import list_aliases

            items = list_aliases()
        elif kind == "datasets":
            from .datasets import list_datasets

            items = list_datasets()
        elif kind == "estimators":
            from .robust_estimators import list_estimators
            from .robust_estimators.base_estimator import ALIASES, KINDS

            items = [f"{k}.{n}" for k in KINDS for n in list_estimators(k)] + [
                f"{k}.{name} -> {k}.{a.target} ({a.source})"
                for k in KINDS
                for name, a in sorted(ALIASES[k].items())
            ]
        elif kind == "benchmarks":
            from .eval.base import list_benchmarks

            items = list_benchmarks()
        elif kind == "configs":
            from .utils.conf import list_confs

            items = list_confs()
        else:
            try:
                from .weights import REGISTRY

                items = sorted(REGISTRY)
            except ImportError:
                items = []
        print(f"{kind} ({len(items)}):")
        for item in items:
            print(f"  {item}")


if __name__ == "__main__":
    main()
