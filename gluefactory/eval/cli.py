"""``python -m gluefactory.eval.<benchmark>``: the command line shared by all benchmarks.

    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official
    python -m gluefactory.eval.hpatches --conf aliked+lightglue-official eval.ransac_th=-1
    python -m gluefactory.eval.megadepth1500 --checkpoint my_experiment --tag trial

Results go to ``<outputs>/results/<benchmark>/<tag>/`` (see ``docs/evaluation.md``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .. import settings
from ..utils.cli import main_wrapper
from ..utils.conf import as_plain
from ..utils.errors import ConfigError
from .io import check_tag, default_tag, eval_conf_layers, key_origins, parse_eval_args
from .pipeline import EvalPipeline
from .provenance import NON_RESULT_KEYS

logger = logging.getLogger(__name__)


def results_dir(benchmark: str, tag: str) -> Path:
    return settings.eval_root() / benchmark / tag


def prepare_benchmark(
    cls: type[EvalPipeline], argv: list[str] | None = None
) -> tuple[EvalPipeline, Path, argparse.Namespace]:
    """Parse ``argv`` and check everything (tag, model, data, eval): the benchmark,
    its results folder and the arguments. Reads the config files it is given and
    writes nothing (docs/errors.md, rule 1); an error about keys says which layer
    (checkpoint config, ``--conf``, command line) set them."""
    doc = cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", None)
    args = parse_eval_args(f"python -m gluefactory.eval.{cls.name}", argv, doc)
    tag = check_tag(args.tag) if args.tag is not None else None
    layers = eval_conf_layers(cls.name, args.conf, args.checkpoint, args.dotlist)
    try:  # every ${interpolation} of the user's config resolves in it
        user = OmegaConf.create(as_plain(OmegaConf.merge({}, *(c for _, c in layers))))
    except OmegaConfBaseException as e:  # e.g. ${x} naming no key
        first = str(e).splitlines()[0]
        raise ConfigError(f"Invalid configuration: {e.full_key}: {first}") from e
    try:
        bench = cls(user)  # the one config check: model, data, eval, estimator
    except ConfigError as e:
        raise ConfigError(f"{e}{key_origins(str(e), layers)}") from e
    if tag is None:
        tag = default_tag(args.conf, args.checkpoint, args.dotlist, NON_RESULT_KEYS)
    return bench, results_dir(cls.name, tag), args


def run_benchmark(
    cls: type[EvalPipeline], argv: list[str] | None = None
) -> tuple[dict[str, float], Path]:
    """:func:`prepare_benchmark`, run it (:func:`gluefactory.eval.stages.run`: one
    writer per results folder) and print the summary table."""
    bench, out, args = prepare_benchmark(cls, argv)
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
