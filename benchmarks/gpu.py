"""One short check of the GPU paths, for a lent GPU machine (docs/benchmarks.md, "GPU check").

    python -m benchmarks.gpu [--steps 60] [--output FILE]

1. Training with ``--mixed_precision float16`` (autocast + GradScaler), ``bfloat16`` and
   float32: the learning experiment's small LightGlue on XFeat points over homographies of
   the bundled photographs, first and last training loss, validation match recall,
   seconds per step.
2. Flash attention: LighterGlue (official weights) in float16 with the SDPA flash kernel
   forced, against the math kernel: identical matches?, milliseconds per pair.
3. NCCL: two DDP ranks with the trainer's ``--distributed`` where two GPUs are visible,
   else one NCCL rank (init, all_reduce, barrier) and a note.
4. CUDA evaluation: ``gluefactory.eval.hpatches`` on the built-in set on the GPU and, in a
   child process with no GPU visible, on the CPU: the same summaries?, time of each.

Every step prints its table even when another step fails (the failure is one row).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import traceback
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import Interpreter, emit, photo, table


def train_conf(precision: str | None, steps: int, devices: int = 1) -> dict:
    """The learning experiment's scratch recipe (:mod:`benchmarks.learning`) with 4 layers
    and 4 heads, batch 8, 4 workers, a constant lr, on the GPU for ``steps`` steps."""
    from benchmarks.learning import train_conf as learning_conf

    conf = learning_conf(
        "scratch", 60.0, precision, num_heads=4, n_layers=4, max_steps=steps
    )
    conf["data"].update(batch_size=8, num_workers=4)
    conf["train"].update(device="cuda", num_devices=devices, lr_schedule={"type": "constant"},
                         log_every_iter=10, eval_every_iter=steps, save_every_iter=steps)  # fmt: skip
    return conf


def train_row(name: str, precision: str | None, steps: int, devices: int = 1) -> list:
    from gluefactory import settings
    from gluefactory.trainer import train

    t0 = time.perf_counter()
    summary = train(f"gpu-{name}", train_conf(precision, steps, devices),
                    overwrite=True, distributed_run=devices > 1)  # fmt: skip
    wall = time.perf_counter() - t0
    lines = (settings.training_root() / f"gpu-{name}" / "metrics.jsonl").read_text()
    records = [json.loads(line) for line in lines.splitlines()]
    losses = [r["loss/total"] for r in records if r["kind"] == "train"]
    recall = [r.get("match_recall") for r in records if r["kind"] == "val"]
    loss = [f"{losses[i]:.3f}" if losses else "-" for i in (0, -1)]
    return [
        name,
        summary["step"],
        *loss,
        f"{recall[-1]:.3f}" if recall else "-",
        f"{wall / max(summary['step'], 1):.3f}",
    ]


def training(steps: int) -> str:
    rows = []
    for name, precision in [("float32", None), ("float16", "float16"),
                            ("bfloat16", "bfloat16")]:  # fmt: skip
        rows.append(guarded(name, partial(train_row, name, precision, steps), 6))
    head = [
        "precision",
        "steps",
        "first loss",
        "last loss",
        "val match recall",
        "s/step",
    ]
    return "Training (GradScaler with float16)\n\n" + table(head, rows)


def pair() -> dict:
    """XFeat features (2048) of a photograph and its warp, on the GPU."""
    from gluefactory.geometry.homography import warp_image
    from gluefactory.models import get_model

    img = photo("astronaut").cuda()
    H = torch.tensor([[[0.9, 0.1, 30], [-0.1, 0.95, 20], [1e-4, 0, 1]]]).cuda()
    xfeat = get_model("extractors.xfeat")({"max_num_keypoints": 2048}).cuda().eval()
    data = {}
    for i, t in enumerate([img, warp_image(img, H, img.shape[:-3:-1])]):
        with torch.inference_mode():
            f = xfeat({"image": t})
        data.update({f"{k}{i}": v for k, v in f.items()})
        data[f"view{i}"] = {"image": t, "image_size": torch.tensor([t.shape[-1:-3:-1]])}
    return data


def flash_attention() -> str:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from gluefactory.models import get_model

    data = pair()
    lg = get_model("matchers.lightglue")(
        {
            "features": "xfeat",
            "filter_threshold": 0.1,
            "depth_confidence": -1,
            "width_confidence": -1,
        }
    )
    lg = lg.cuda().eval()  # fmt: skip
    out, rows = {}, []
    for name, backend in [("math", SDPBackend.MATH),
                          ("flash", SDPBackend.FLASH_ATTENTION)]:  # fmt: skip

        def run(backend=backend):
            with sdpa_kernel([backend]), torch.inference_mode(), \
                 torch.autocast("cuda", torch.float16):  # fmt: skip
                return lg(data)

        try:
            out[name] = run()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                run()
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) / 20 * 1e3
            n = int((out[name]["matches0"] > -1).sum())
            rows.append([name, n, f"{ms:.2f}"])
        except Exception as e:  # noqa: BLE001 - a failed kernel is a row of the table
            rows.append([name, f"failed: {type(e).__name__}: {e}"[:120], "-"])
    if len(out) == 2:
        same = (out["math"]["matches0"] == out["flash"]["matches0"]).float().mean()
        rows.append(["flash vs math: same match", f"{100 * float(same):.2f} %", ""])
    return "LighterGlue, 2048 points, float16\n\n" + table(
        ["SDPA kernel", "matches", "ms / pair"], rows
    )


def nccl() -> str:
    n = torch.cuda.device_count()
    if n >= 2:
        row = guarded("DDP", lambda: train_row("ddp", None, 30, devices=2), 6)
        return "NCCL: the trainer with --distributed over 2 GPUs\n\n" + table(
            ["run", "steps", "first loss", "last loss", "val match recall", "s/step"],
            [row],
        )
    import torch.distributed as dist

    def one_rank() -> list:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
        dist.init_process_group("nccl", rank=0, world_size=1)
        x = torch.ones(4, device="cuda")
        dist.all_reduce(x)
        dist.barrier()
        dist.destroy_process_group()
        return ["1 rank", f"all_reduce ok: {x.tolist() == [1.0] * 4}"]

    rows = [guarded("1 rank", one_rank, 2)]
    return (f"NCCL ({n} GPU: DDP over 2 ranks needs 2 GPUs)\n\n"
            + table(["run", "result"], rows))  # fmt: skip


def evaluation(data: tuple[str, ...] = ("data.data_dir=builtin/hpatches",)) -> str:
    """``gluefactory.eval.hpatches`` (``data`` overrides) on the GPU, then in a child with
    no GPU visible, both under the peer driver (:class:`~benchmarks.common.Interpreter`)."""
    from gluefactory import settings
    from gluefactory.eval.cli import results_dir

    argv = ["--conf", "xfeat+lighterglue-official", "--overwrite", *data]
    logs = settings.outputs_root() / "gpu-check"
    logs.mkdir(parents=True, exist_ok=True)
    ours, runs = Interpreter.ours(os.cpu_count() or 1, settings.outputs_root()), {}
    for name, env in [("cuda", {}), ("cpu", {"CUDA_VISIBLE_DEVICES": ""})]:
        side = dataclasses.replace(ours, env={**ours.env, **env})
        try:
            r = side.run("gluefactory.eval.hpatches", [*argv, "--tag", f"gpu-{name}"],
                         "eval", logs / f"eval_{name}.log")  # fmt: skip
        except RuntimeError as e:  # the other device still runs
            runs[name] = ({}, f"failed: {str(e).splitlines()[-1]}"[:160])
            continue
        path = results_dir("hpatches", f"gpu-{name}") / "summaries.json"
        runs[name] = (json.loads(path.read_text()),
                      f"{r['wall_s']:.1f} (models {r['model_s']:.1f})")  # fmt: skip
    keys = sorted(set(runs["cuda"][0]) | set(runs["cpu"][0]))
    rows = [["time (s)", runs["cuda"][1], runs["cpu"][1]]]
    rows += [[k, runs["cuda"][0].get(k), runs["cpu"][0].get(k)] for k in keys
             if k.startswith(("H_error", "mprec", "num_matches"))]  # fmt: skip
    return "eval.hpatches, built-in set\n\n" + table(["", "cuda", "cpu"], rows)


def guarded(name: str, fn, width: int) -> list:
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - a failed step is a row, the others still run
        traceback.print_exc()
        return [name, f"failed: {type(e).__name__}: {e}"[:160]] + ["-"] * (width - 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("no CUDA device: this check is for a GPU machine")
    parts = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}, {time.strftime('%Y-%m-%d')}"]  # fmt: skip
    for step in (lambda: training(args.steps), flash_attention, nccl, evaluation):
        try:
            parts.append(step())
        except Exception as e:  # noqa: BLE001 - report, then the next step
            traceback.print_exc()
            parts.append(f"{step.__name__}: failed: {type(e).__name__}: {e}")
        print(parts[-1], flush=True)
    emit("\n\n".join(parts), args.output)


if __name__ == "__main__":
    main()
