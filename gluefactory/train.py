"""Train a model: ``python -m gluefactory.train EXPERIMENT --conf NAME_OR_PATH [key=value ...]``.

The run lives in ``<outputs>/training/EXPERIMENT/`` (config.yaml, log.txt, metrics.jsonl,
TensorBoard events, checkpoints). Flags and ``key=value`` overrides mix freely; see
docs/training.md for every ``train.*`` key.
"""

from __future__ import annotations

import argparse

from omegaconf import OmegaConf

from .utils.cli import main_wrapper
from .utils.conf import compose


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gluefactory.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "experiment", help="experiment name (folder under <outputs>/training)"
    )
    p.add_argument("--conf", help="shipped config name or path to a YAML file")
    p.add_argument(
        "--restore", action="store_true", help="resume from the last checkpoint"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="start an existing experiment again"
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="DDP: spawn train.num_devices processes (default all GPUs), or run as a torchrun rank",
    )
    p.add_argument(
        "--mixed_precision", "--mp", choices=["float16", "bfloat16"], default=None
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=None,
        help="torch.compile the model (optional mode, e.g. reduce-overhead)",
    )
    p.add_argument("--overfit", action="store_true", help="repeat one batch")
    p.add_argument(
        "--run_benchmarks", action="store_true", help="run conf.benchmarks each epoch"
    )
    p.add_argument(
        "--no_eval_0", action="store_true", help="no validation before the first step"
    )
    p.add_argument("--detect_anomaly", "--da", action="store_true")
    p.add_argument(
        "--log_it", action="store_true", help="TensorBoard x-axis: steps, not samples"
    )
    p.add_argument(
        "dotlist", nargs="*", help="overrides, e.g. train.lr=2e-4 data.batch_size=32"
    )
    return p


def flags_to_conf(args: argparse.Namespace) -> dict:
    t = {}
    if args.mixed_precision:
        t["mixed_precision"] = args.mixed_precision
    if args.compile is not None:
        t["compile"] = args.compile
    for flag in ("overfit", "run_benchmarks", "detect_anomaly", "log_it"):
        if getattr(args, flag):
            t[flag] = True
    if args.no_eval_0:
        t["eval_0"] = False
    return {"train": t} if t else {}


@main_wrapper
def main(argv: list[str] | None = None) -> dict | None:
    args = parser().parse_intermixed_args(argv)
    from .trainer import train

    conf = compose(args.conf, list(args.dotlist))
    conf = OmegaConf.merge(conf, flags_to_conf(args))
    return train(
        args.experiment,
        conf,
        restore=args.restore,
        distributed_run=args.distributed,
        overwrite=args.overwrite,
    )


def run() -> int:
    """The exit code of the CLI: 130 for an interrupted run, else 0 (errors: 2)."""
    result = main()
    interrupted = isinstance(result, dict) and result.get("status") == "interrupted"
    return 130 if interrupted else 0


if __name__ == "__main__":
    from .trainer.distributed import exit_rank, launched_by_torchrun

    if not launched_by_torchrun():
        raise SystemExit(run())
    try:  # one rank of a torchrun job: exit without finalization (see exit_rank)
        code = run()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    exit_rank(code)
