"""``python -m gluefactory.eval.<benchmark>``: the command line shared by all benchmarks.

    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official
    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official eval.ransac_th=-1
    python -m gluefactory.eval.megadepth1500 --checkpoint my_experiment --tag trial

Results go to ``<outputs>/results/<benchmark>/<tag>/`` (see ``docs/evaluation.md``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .. import settings
from ..utils.cli import main_wrapper
from .io import check_tag, compose_eval_conf, default_tag, parse_eval_args
from .pipeline import EvalPipeline
from .provenance import NON_RESULT_KEYS

logger = logging.getLogger(__name__)


def results_dir(benchmark: str, tag: str) -> Path:
    return settings.eval_root() / benchmark / tag


def run_benchmark(
    cls: type[EvalPipeline], argv: list[str] | None = None
) -> tuple[dict[str, float], Path]:
    """Parse ``argv``, merge the config, run ``cls`` and print the summary table."""
    doc = cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", None)
    args = parse_eval_args(f"python -m gluefactory.eval.{cls.name}", argv, doc)
    user = compose_eval_conf(cls.name, args.conf, args.checkpoint, args.dotlist)
    bench = cls(user)  # the one config check: unknown keys, estimator options
    tag = (
        check_tag(args.tag)
        if args.tag
        else default_tag(args.conf, args.checkpoint, args.dotlist, NON_RESULT_KEYS)
    )
    out = results_dir(cls.name, tag)
    summaries = bench.run(
        out,
        overwrite=args.overwrite,
        overwrite_eval=args.overwrite_eval,
        checkpoint=args.checkpoint,
    )
    print(f"\n{cls.name} results ({out}):")
    print(bench.summary_table(summaries))
    if args.plot:
        import matplotlib.pyplot as plt
        from PIL import Image

        for png in sorted(out.glob("*.png")):
            plt.figure(png.stem)
            plt.imshow(Image.open(png))
            plt.axis("off")
        plt.show()
    return summaries, out


def make_main(cls: type[EvalPipeline]):
    """The ``main(argv)`` of a benchmark module (user errors as one line, exit 2)."""

    @main_wrapper
    def main(argv: list[str] | None = None) -> dict[str, float]:
        return run_benchmark(cls, argv)[0]

    return main
