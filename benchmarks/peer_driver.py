"""Run ``python peer_driver.py TARGET ARGS...`` (TARGET a module, or a ``.py`` file)
under torch hooks and write what was measured, as JSON, to ``$PEER_BENCH_OUT``.

Executed by both interpreters, ours and upstream glue-factory's venv, so it imports
nothing but the standard library, torch, NumPy and OpenCV (it records their versions).
``$PEER_BENCH_MODE``:

- ``eval``: time inside the outermost ``torch.nn.Module`` calls (global module hooks;
  upstream's ``CacheLoader``, which reads cached predictions, is not a model);
- ``train``: the end time of every optimizer step (global optimizer post-hook);
- anything else: only the process's wall and CPU time and its peak memory.
"""

import json
import os
import resource
import runpy
import sys
import time

del sys.path[0]  # this folder: its scripts must not shadow modules (e.g. lightglue)
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

state = {"depth": 0, "t0": 0.0, "model_s": 0.0, "calls": 0, "steps": [], "by_class": {}}
mode = os.environ["PEER_BENCH_MODE"]


def _pre(module, args):
    if state["depth"] == 0:
        state["t0"] = time.perf_counter()
    state["depth"] += 1


def _post(module, args, out):
    state["depth"] -= 1
    if state["depth"] == 0:
        dt, name = time.perf_counter() - state["t0"], type(module).__name__
        c = state["by_class"].setdefault(name, [0, 0.0])
        c[0], c[1] = c[0] + 1, c[1] + dt
        if name != "CacheLoader":
            state["model_s"] += dt
            state["calls"] += 1


if mode == "eval":
    torch.nn.modules.module.register_module_forward_pre_hook(_pre)
    torch.nn.modules.module.register_module_forward_hook(_post)
elif mode == "train":
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(
        lambda opt, a, kw: state["steps"].append(time.perf_counter())
    )
state["versions"] = {"torch": torch.__version__, "NumPy": np.__version__,
                     "OpenCV": getattr(cv2, "__version__", "?")}  # fmt: skip
target, sys.argv = sys.argv[1], sys.argv[1:]
state["base_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0, code = time.perf_counter(), 0
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    state.update(run_s=time.perf_counter() - t0, peak_rss_mb=ru.ru_maxrss / 1024,
                 cpu_s=ru.ru_utime + ru.ru_stime, code=code)  # fmt: skip
    with open(os.environ["PEER_BENCH_OUT"], "w") as f:
        json.dump(state, f)
sys.exit(code)
