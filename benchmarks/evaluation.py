"""Speed of the evaluation pipeline on the built-in HPatches-format set.

    python -m benchmarks.evaluation [--conf xfeat+lighterglue-official] [--threads 2]
                                    [--data data.data_dir=builtin/hpatches] [--output FILE]

Measures, in a temporary outputs folder (the data root is the usual one, where the
built-in set is built on first use):

1. **Models alone**: the model's forward (extraction + matching) on every pair in a plain
   loop, both images extracted per pair, as a user's script would do (the baseline).
2. **First run** of ``gluefactory.eval.hpatches`` (export + evaluation, one threshold),
   and its overhead: against the model forward time measured inside the same run
   (robust to machine load), and against (1) (which extracts both images of every
   pair, while the pipeline extracts each distinct image once; on a shared machine this
   comparison also carries the load difference between the two runs). The export-only
   overhead (data loading, HDF5 writing, keypoint rescaling) is reported separately.
3. **Rerun with only eval.* changed** (another threshold, a new tag: predictions reused),
   as a fraction of (2).
4. **PoseLib sweep over 6 thresholds**, with 1 worker and with ``--threads`` workers.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from .common import emit, host, table


def models_alone(conf_name: str, data_override: list[str]) -> tuple[float, int]:
    """Seconds of model forward over all pairs (no cache, no pipeline), number of pairs."""
    from gluefactory.datasets import get_dataset
    from gluefactory.eval.hpatches import HPatchesPipeline
    from gluefactory.eval.io import compose_eval_conf

    bench = HPatchesPipeline(
        compose_eval_conf("hpatches", conf_name, None, data_override)
    )
    model = bench.build_model(None).eval()
    loader = get_dataset(bench.conf.data.name)(bench.conf.data).get_data_loader("test")
    data = [d for d in loader]  # loading excluded from the model time
    total = 0.0
    with torch.inference_mode():
        model(data[0])  # warm-up
        for d in data:
            t0 = time.perf_counter()
            model(d)
            total += time.perf_counter() - t0
    return total, len(data)


def run(args: list[str]) -> tuple[float, dict]:
    """Seconds of one ``gluefactory.eval.hpatches`` run, and its ``timings.json``."""
    from gluefactory.eval.cli import run_benchmark
    from gluefactory.eval.hpatches import HPatchesPipeline

    t0 = time.perf_counter()
    _, out = run_benchmark(HPatchesPipeline, [*args, "eval.progress=false"])
    return time.perf_counter() - t0, json.loads((out / "timings.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conf", default="xfeat+lighterglue-official")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", nargs="*", default=["data.data_dir=builtin/hpatches"],
                        help="overrides")  # fmt: skip
    parser.add_argument("--output", type=Path, help="also write the table")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ["GLUEFACTORY_OUTPUTS"] = tempfile.mkdtemp(prefix="gf-eval-bench-")
    base = ["--conf", args.conf, *args.data, "eval.estimator=poselib"]

    t_models, n_pairs = models_alone(args.conf, args.data)
    t_first, tim1 = run([*base, "--tag", "first", "eval.ransac_th=1.0"])
    t_rerun, tim2 = run([*base, "--tag", "rerun", "eval.ransac_th=2.0"])
    assert "export_s" not in tim2, "the rerun exported again"
    sweep1 = run([*base, "--tag", "sweep1", "eval.ransac_th=-1", "eval.workers=1"])[1]
    sweepn = run([*base, "--tag", "sweepN", "eval.ransac_th=-1", f"eval.workers={args.threads}"])[1]  # fmt: skip
    model_s = tim1["model_s"]
    rows = [
        ("pairs / distinct images extracted", f"{n_pairs} / {tim1['extractions']}"),
        ("models alone (2 extractions + matching per pair)", f"{t_models:.1f} s"),
        ("first run: export + evaluation (1 threshold)", f"{t_first:.1f} s"),
        ("  of which model forward in the export", f"{model_s:.1f} s"),
        ("  of which evaluation", f"{tim1['eval_s']:.1f} s"),
        ("pipeline overhead vs the model time of the same run",
         f"{100 * (t_first / model_s - 1):+.1f} %"),
        ("first run vs models alone (load-sensitive)", f"{100 * (t_first / t_models - 1):+.1f} %"),
        ("export overhead vs its own model time",
         f"{100 * (tim1['export_s'] - model_s) / model_s:+.1f} %"),
        ("rerun, only eval.* changed", f"{t_rerun:.1f} s"),
        ("rerun vs first run", f"{100 * t_rerun / t_first:.1f} %"),
        ("poselib sweep, 6 thresholds, 1 worker", f"{sweep1['sweep_s']:.1f} s"),
        (f"poselib sweep, 6 thresholds, {sweepn['sweep_workers']} workers",
         f"{sweepn['sweep_s']:.1f} s"),
    ]  # fmt: skip
    emit(
        f"Evaluation pipeline speed: {args.conf}, {' '.join(args.data)}, "
        f"{host(args.threads)}\n\n" + table(["measure", "value"], rows),
        args.output,
    )


if __name__ == "__main__":
    main()
