"""The training loop of one process (rank): epochs, steps, validation, checkpoints.

State saved at every checkpoint (always at an optimizer-step boundary): model,
optimizer, scheduler, scaler, the RNG states of every rank, the counters (epoch, batches
consumed in the epoch, steps, samples), the non-finite counters and the best value. A
restored run continues with the next batch of the same epoch permutation, so it ends
with the weights an uninterrupted run would have.
"""

from __future__ import annotations

import logging
import math
import signal
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..datasets.base_dataset import get_dataset
from ..models import get_model
from ..utils.conf import ConfigError
from ..utils.tensor import batch_to_device
from . import checkpoints as ckpts
from . import distributed
from .data import ShardBatches, TrainBatches, make_loader
from .logs import Averages, Board, match_figures
from .optim import build_optimizer, build_scheduler, trainable_parameters
from .step import Stepper, WithLoss, make_scaler, set_train_mode
from .validation import evaluate

logger = logging.getLogger(__name__)


class Trainer:
    def __init__(self, conf: DictConfig, exp_dir: Path, dist: distributed.Dist):
        self.conf, self.t, self.dir, self.dist = conf, conf.train, Path(exp_dir), dist
        self.device = dist.device
        ckpts.seed_everything(self.t.seed)
        self._build_data()
        self.model = get_model(conf.model.name)(conf.model).to(self.device)
        self.params = trainable_parameters(self.model, self.t.opt_regexp)
        self.optimizer = build_optimizer(self.params, self.t)
        spe = self.steps_per_epoch
        total = (
            self.t.epochs * spe
            if self.t.max_steps is None
            else min(self.t.max_steps, self.t.epochs * spe)
        )
        self.total_steps = total
        self.scheduler = build_scheduler(
            self.optimizer,
            self.t,
            self.t.epochs if self.t.lr_schedule.on_epoch else total,
        )
        self.scaler = make_scaler(self.device, self.t.mixed_precision)
        module = WithLoss(self.model)
        if self.t.compile:
            mode = self.t.compile if isinstance(self.t.compile, str) else None
            module = torch.compile(module, mode=mode)
        if dist.enabled:
            if self.device.type == "cuda":
                module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
            module = torch.nn.parallel.DistributedDataParallel(
                module,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                find_unused_parameters=self.t.ddp_find_unused_parameters,
            )
        self.stepper = Stepper(
            module,
            [p for _, p in self.params],
            self.optimizer,
            self.scaler,
            self.t,
            dist,
            self.device,
        )
        self.epoch = self.batch_in_epoch = self.step = self.samples = 0
        self.best = None
        self.last_val: dict = {}
        self._pending_rng = None
        self._stop = None
        self.board = Board(self.dir if dist.main else None)
        self._metrics_file = self.dir / "metrics.jsonl"

    # ------------------------------------------------------------------ setup

    def _build_data(self) -> None:
        c, d = self.conf, self.dist
        dataset = get_dataset(c.data.name)(c.data)
        val_dataset = (
            dataset if c.data_val is None else get_dataset(c.data_val.name)(c.data_val)
        )
        self.dataset, self.val_dataset = dataset, val_dataset
        self.train_set = dataset.get_dataset("train")
        self.val_set = val_dataset.get_dataset("val")
        self.batch_size = dataset.batch_size("train")  # global micro-batch
        self.batches = TrainBatches(
            len(self.train_set),
            self.batch_size,
            self.t.seed,
            d.rank,
            d.world_size,
            shuffle=bool(dataset.conf.get("shuffle_training", True)),
            overfit=bool(self.t.overfit),
        )
        acc = int(self.t.accumulate)
        self.steps_per_epoch = self.batches.num_batches // acc
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"An epoch has {self.batches.num_batches} batches, fewer than "
                f"train.accumulate={acc}: lower train.accumulate or data.batch_size."
            )
        self.batches.num_batches = self.steps_per_epoch * acc  # whole steps only
        pin = self.device.type == "cuda"
        self.loader = make_loader(
            self.train_set, self.batches, int(dataset.conf.num_workers), pin
        )
        vbs = max(1, val_dataset.batch_size("val") // d.world_size)
        self.val_loader = make_loader(
            self.val_set,
            ShardBatches(len(self.val_set), vbs, self.t.seed, d.rank, d.world_size),
            int(val_dataset.conf.num_workers),
            pin,
        )

    # --------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        rngs = distributed.gather_objects(ckpts.rng_state(), self.dist)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": rngs,
            "counters": {
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "step": self.step,
                "samples": self.samples,
                "world_size": self.dist.world_size,
            },
            "stepper": self.stepper.state_dict(),
            "best": self.best,
            "eval": self.last_val,
            "conf": OmegaConf.to_container(self.conf, resolve=True),
        }

    def load_state_dict(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["lr_scheduler"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        c = ckpt["counters"]
        self.epoch, self.batch_in_epoch = c["epoch"], c["batch_in_epoch"]
        self.step, self.samples = c["step"], c["samples"]
        self.stepper.load_state_dict(ckpt["stepper"])
        self.best, self.last_val = ckpt.get("best"), ckpt.get("eval") or {}
        rngs = ckpt["rng"]
        if c["world_size"] != self.dist.world_size:
            logger.warning(
                "The checkpoint was written by %d processes, this run has %d: the run "
                "continues but not bit-exactly.",
                c["world_size"],
                self.dist.world_size,
            )
        self._pending_rng = rngs[self.dist.rank if self.dist.rank < len(rngs) else 0]

    def save(self, best: bool = False) -> Path | None:
        """Write ``checkpoint_<epoch>_<step>.tar`` (or, with ``best``, only
        ``checkpoint_best.tar``); a collective: every rank calls it."""
        state = self.state_dict()
        if not self.dist.main:
            return None
        if best:
            path = ckpts.atomic_save(state, self.dir / ckpts.BEST)
            logger.info("Saved %s (%s %.4g)", path.name, self.t.best_key, self.best)
            return path
        path = ckpts.checkpoint_path(self.dir, self.epoch, self.step)
        ckpts.atomic_save(state, path)
        ckpts.prune(self.dir, self.t.keep_last_checkpoints)
        logger.info("Saved %s", path.name)
        return path

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict:
        """Train until the last epoch, ``max_steps``, ``max_minutes`` or SIGINT."""
        t = self.t
        self._start_time = time.monotonic()
        previous = self._install_sigint()
        set_train_mode(self.model)
        status = "finished"
        try:
            if (
                self.step == 0
                and self.batch_in_epoch == 0
                and self.epoch == 0
                and t.eval_0
            ):
                self.validate()
            path = None
            while self.epoch < t.epochs and status == "finished":
                status, path = self._epoch()
            if status in ("max_steps", "time"):
                self.validate()
            if status != "finished":
                path = self.save()
            elif path is None and self.dist.main:  # restored after its last epoch
                logger.info("The run had already finished (%d epochs).", t.epochs)
                found = ckpts.list_checkpoints(self.dir)
                path = found[-1] if found else None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            self.board.close()
        if status == "interrupted":
            logger.info(
                "Interrupted: saved %s. Resume with --restore.",
                path.name if path else "",
            )
        return {
            "status": status,
            "step": self.step,
            "epoch": self.epoch,
            "val": self.last_val,
            "checkpoint": path,
            "nonfinite": self.stepper.nonfinite_total,
        }

    def _epoch(self) -> tuple[str, Path | None]:
        t, e = self.t, self.epoch
        fresh = self.batch_in_epoch == 0
        if fresh:
            ckpts.seed_everything(t.seed + e)
        self._dataset_callback(e)
        if self._pending_rng is not None:
            ckpts.set_rng_state(self._pending_rng)
            self._pending_rng = None
        self.batches.set_epoch(e, start=self.batch_in_epoch)
        acc = int(t.accumulate)
        window = Averages()
        for batch in self.loader:
            self.batch_in_epoch += 1
            last = self.batch_in_epoch % acc == 0
            data = batch_to_device(batch, self.device, non_blocking=True)
            _, losses, metrics = self.stepper.micro_step(data, last)
            window.add({f"loss/{k}": v for k, v in losses.items()})
            window.add(metrics)
            if not last:
                continue
            self.stepper.optimizer_step(self.step)
            self.step += 1
            self.samples += self.batch_size * acc
            if not t.lr_schedule.on_epoch:
                self._schedule_step()
            if self.step % t.log_every_iter == 0:
                self._log_train(window)
                window = Averages()
            stop = self._should_stop()
            end_of_epoch = self.batch_in_epoch == self.batches.num_batches
            if self.step % t.eval_every_iter == 0 and not end_of_epoch:
                self.validate()
            if stop is not None:
                return stop, None
            if self.step % t.save_every_iter == 0 and not end_of_epoch:
                self.save()
        self.epoch += 1
        self.batch_in_epoch = 0
        if t.lr_schedule.on_epoch:
            self._schedule_step()
        self.validate()
        if t.run_benchmarks and self.conf.benchmarks:
            self._benchmarks(e)
        return "finished", self.save()

    def _schedule_step(self) -> None:
        # a skipped (non-finite) first step makes torch warn about the call order;
        # the schedule is a function of the step count, so the warning does not apply
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Detected call of `lr_scheduler.step"
            )
            self.scheduler.step()

    def _should_stop(self) -> str | None:
        t = self.t
        stop = None
        if self._stop is not None:
            stop = "interrupted"
        elif t.max_steps is not None and self.step >= t.max_steps:
            stop = "max_steps"
        elif (
            t.max_minutes is not None
            and (time.monotonic() - self._start_time) > 60 * t.max_minutes
        ):
            stop = "time"
        flag = (
            distributed.any_true(stop is not None, self.dist)
            if self.dist.enabled
            else stop is not None
        )
        if flag and stop is None:
            stop = "interrupted"
        return stop

    def _dataset_callback(self, epoch: int) -> None:
        name = self.t.dataset_callback_fn
        if not name:
            return
        targets = [self.train_set] + (
            [self.val_set] if self.t.dataset_callback_on_val else []
        )
        for ds in targets:
            fn = getattr(ds, name, None)
            if fn is None:
                raise ConfigError(
                    f"train.dataset_callback_fn={name!r}: {type(ds).__name__} has no such method."
                )
            fn(self.t.seed + epoch)

    # -------------------------------------------------------------- evaluation

    def validate(self) -> dict:
        plots = self._plot_conf()
        figures = {}

        def on_batch(i, pred, data):
            if not self.dist.main or i >= plots[0]:
                return
            gt = (
                self.model.ground_truth if hasattr(self.model, "ground_truth") else None
            )
            if "gt_matches0" not in data and gt is not None and "matches0" in data:
                pred = {
                    **pred,
                    **{
                        k if k.startswith("gt_") else f"gt_{k}": v
                        for k, v in gt(data).items()
                    },
                }
            fn = plots[1] or match_figures
            for k, fig in fn(pred, data).items():
                figures[f"val_{i}/{k}"] = fig

        res = evaluate(
            self.model,
            self.val_loader,
            self.dist,
            self.device,
            self.t.seed,
            self.t.mixed_precision,
            on_batch if plots[0] else None,
        )
        if self.t.best_key not in res:
            raise ConfigError(
                f"train.best_key={self.t.best_key!r} is not a validation value; "
                f"available: {', '.join(res)}."
            )
        self.last_val = {**res, "_step": self.step}
        if self.dist.main:
            text = " ".join(
                f"{k} {v:.4g}" for k, v in res.items() if not k.startswith("loss/num_")
            )
            logger.info("[Validation step %d epoch %d] %s", self.step, self.epoch, text)
            x = self._x()
            self.board.scalars("val", res, x)
            for tag, fig in figures.items():
                self.board.figure(f"figures/{tag}", fig, x)
            self._append_metrics("val", res)
        if self._is_best():  # same decision on every rank (reduced results)
            self.save(best=True)
        return res

    def _plot_conf(self):
        p = self.t.plot
        if not p:
            return (0, None)
        if isinstance(p, int):
            return (p, None)
        import importlib

        n, fn = p
        mod, _, attr = str(fn).rpartition(".")
        return (int(n), getattr(importlib.import_module(mod), attr))

    def _is_best(self) -> bool:
        if not self.last_val or self.last_val.get("_step") != self.step:
            return False
        v = self.last_val[self.t.best_key]
        if v is None or math.isnan(v):
            return False
        better = self.best is None or (
            v < self.best if self.t.best_mode == "min" else v > self.best
        )
        if better:
            self.best = v
        return better

    def _benchmarks(self, epoch: int) -> None:
        from .benchmarks import run_benchmarks

        if self.dist.main:
            out = self.dir / "benchmarks" / f"epoch_{epoch}"
            results = run_benchmarks(self.conf, self.model, out)
            for name, summary in results.items():
                self.board.scalars(f"test/{name}", summary, self._x())
            self._append_metrics(
                "test",
                {f"{n}/{k}": v for n, s in results.items() for k, v in s.items()},
            )
        if self.dist.enabled:
            torch.distributed.barrier()

    # ----------------------------------------------------------------- logging

    def _x(self) -> int:
        return self.step if self.t.log_it else self.samples

    def _log_train(self, window: Averages) -> None:
        sums, counts = window.state()
        total = Averages()
        for s, c in distributed.gather_objects((sums, counts), self.dist):
            total.merge(s, c)
        values = total.means()
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        values["epoch"] = self.epoch
        values["nonfinite_skipped"] = self.stepper.nonfinite_total
        if self.dist.main:
            shown = ("loss/total", "loss/last", "match_recall", "match_precision")
            text = " ".join(f"{k} {values[k]:.4g}" for k in shown if k in values)
            logger.info(
                "[E %d | step %d/%d] %s lr %.3g",
                self.epoch,
                self.step,
                self.total_steps,
                text,
                values["lr"],
            )
            self.board.scalars("training", values, self._x())
            self._append_metrics("train", values)

    def _append_metrics(self, kind: str, values: dict) -> None:
        import json

        rec = {
            "kind": kind,
            "step": self.step,
            "samples": self.samples,
            "epoch": self.epoch,
        }
        rec.update({k: v for k, v in values.items() if not k.startswith("_")})
        with open(self._metrics_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _install_sigint(self):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum, frame):
            if self._stop is not None:
                raise KeyboardInterrupt
            self._stop = "sigint"
            logger.warning(
                "SIGINT: saving a checkpoint after this step (press again to exit at once)."
            )

        return signal.signal(signal.SIGINT, handler)
