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
import time
import warnings
from pathlib import Path

import torch
from omegaconf import DictConfig
from tqdm import tqdm

from ..models import get_model
from ..utils.conf import ConfigError
from ..utils.tensor import batch_to_device
from . import checkpoints as ckpts
from . import distributed
from .config import saved_conf
from .control import StopControl
from .data import Loaders
from .logs import Averages
from .optim import build_optimizer, build_scheduler, trainable_parameters
from .report import Reporter, figure_hook
from .step import Stepper, WithLoss, make_scaler
from .validation import evaluate

logger = logging.getLogger(__name__)


def progress_bar(total: int, done: int, dist: distributed.Dist) -> tqdm:
    """Steps of the run with loss, lr, time per step and ETA, on rank 0's terminal only:
    tqdm turns itself off where stderr is not a terminal (log files, CI)."""
    return tqdm(
        total=total,
        initial=done,
        unit="step",
        desc="train",
        dynamic_ncols=True,
        leave=False,
        disable=None if dist.main else True,
    )


def wrap(model, t: DictConfig, dist: distributed.Dist, device: torch.device):
    """The module that runs forward + loss: compiled and/or DDP-wrapped."""
    module = WithLoss(model)
    if t.compile:
        module = torch.compile(
            module, mode=t.compile if isinstance(t.compile, str) else None
        )
    if dist.enabled:
        if device.type == "cuda":
            module = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
        module = torch.nn.parallel.DistributedDataParallel(
            module,
            device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=t.ddp_find_unused_parameters,
        )
    return module


class Trainer:
    def __init__(self, conf: DictConfig, exp_dir: Path, dist: distributed.Dist):
        self.conf, self.t, self.dir, self.dist = conf, conf.train, Path(exp_dir), dist
        t, self.device = self.t, dist.device
        self.stop = StopControl(t, dist)  # first: max_minutes counts the set-up
        ckpts.seed_everything(t.seed)
        self.data = Loaders(conf, dist, self.device)
        self.model = get_model(conf.model.name)(conf.model).to(self.device)
        self.params = trainable_parameters(self.model, t.opt_regexp)
        self.optimizer = build_optimizer(self.params, t)
        self.total_steps = t.epochs * self.data.steps_per_epoch
        if t.max_steps is not None:
            self.total_steps = min(t.max_steps, self.total_steps)
        units = t.epochs if t.lr_schedule.on_epoch else self.total_steps
        self.scheduler = build_scheduler(self.optimizer, t, units)
        self.scaler = make_scaler(self.device, t.mixed_precision)
        module = wrap(self.model, t, dist, self.device)
        params = [p for _, p in self.params]
        self.stepper = Stepper(
            module, params, self.optimizer, self.scaler, t, dist, self.device
        )
        self.epoch = self.batch_in_epoch = self.step = self.samples = 0
        self.best = None
        self.last_val: dict = {}
        self._pending_rng = None
        self.report = Reporter(self.dir, dist, t.log_it)

    @property
    def counters(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "samples": self.samples,
            "world_size": self.dist.world_size,
        }

    # --------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict:
        """Everything a restore needs (a collective: the RNG states of every rank)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": distributed.gather_objects(ckpts.rng_state(), self.dist),
            "counters": self.counters,
            "stepper": self.stepper.state_dict(),
            "best": self.best,
            "eval": self.last_val,
            "conf": saved_conf(self.conf),
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
                "The checkpoint was written by %d processes, this run has %d: it "
                "continues, but not bit-exactly.",
                c["world_size"],
                self.dist.world_size,
            )
        self._pending_rng = rngs[self.dist.rank if self.dist.rank < len(rngs) else 0]
        self.report.rewind(self.counters)

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
        t, status, path = self.t, "finished", None
        self.model.train()  # frozen components stay in eval mode (BaseModel.train)
        self._bar = progress_bar(self.total_steps, self.step, self.dist)
        if t.max_minutes is not None:
            logger.info("Set-up took %.1f s of max_minutes.", self.stop.elapsed())
        try:
            with self.stop:
                if t.eval_0 and self.step == 0 and self.batch_in_epoch == 0:
                    self.validate()
                while self.epoch < t.epochs and status == "finished":
                    status, path = self._epoch()
                validated = self.last_val.get("_step") == self.step
                if status in ("max_steps", "time") and not validated:
                    self.validate()
                if status != "finished":
                    path = self.save()
                elif path is None and self.dist.main:  # restored after its last epoch
                    logger.info("The run had already finished (%d epochs).", t.epochs)
                    found = ckpts.list_checkpoints(self.dir)
                    path = found[-1] if found else None
        finally:
            self._bar.close()
            self.report.close()
        if t.max_minutes is not None:
            logger.info(
                "Stopped (%s) after %.1f min of max_minutes %g.",
                status,
                self.stop.elapsed() / 60,
                t.max_minutes,
            )
        if status == "interrupted" and path is not None:
            logger.info("Interrupted: saved %s. Resume with --restore.", path.name)
        return {
            "status": status,
            "step": self.step,
            "epoch": self.epoch,
            "val": {k: v for k, v in self.last_val.items() if not k.startswith("_")},
            "checkpoint": path,
            "nonfinite": self.stepper.nonfinite_total,
        }

    def _epoch(self) -> tuple[str, Path | None]:
        t, e, acc = self.t, self.epoch, int(self.t.accumulate)
        if self.batch_in_epoch == 0:
            ckpts.seed_everything(t.seed + e)
        self.data.epoch_callback(
            t.dataset_callback_fn, t.seed + e, t.dataset_callback_on_val
        )
        if self._pending_rng is not None:  # restored mid-epoch: continue its streams
            ckpts.set_rng_state(self._pending_rng)
            self._pending_rng = None
        self.data.batches.set_epoch(e, start=self.batch_in_epoch)
        window = Averages()
        for batch in self.data.train:
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
            if not self._bar.disable:  # .item() syncs a GPU: only for a terminal
                self._bar.set_postfix(
                    loss=f"{losses['total'].float().mean().item():.4g}",
                    lr=f"{self.optimizer.param_groups[0]['lr']:.3g}",
                    refresh=False,
                )
                self._bar.update()
            self.samples += self.data.batch_size * acc
            if not t.lr_schedule.on_epoch:
                self._schedule_step()
            if self.step % t.log_every_iter == 0:
                self._log_train(window)
                window = Averages()
            stop = self.stop.check(self.step)
            end_of_epoch = self.batch_in_epoch == self.data.batches.num_batches
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
        # a benchmark would overrun max_minutes (the next step stops the run): skipped
        if (
            t.run_benchmarks
            and self.conf.benchmarks
            and self.stop.check(self.step) is None
        ):
            self._benchmarks(e)
        return "finished", self.save()

    def _schedule_step(self) -> None:
        # a skipped (non-finite) first step makes torch warn about the call order;
        # the schedule is a function of the step count, so the warning does not apply
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            self.scheduler.step()

    def _log_train(self, window: Averages) -> None:
        extra = {
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch": self.epoch,
            "nonfinite_skipped": self.stepper.nonfinite_total,
        }
        self.report.train(window, extra, self.counters, self.total_steps)

    # -------------------------------------------------------------- evaluation

    def validate(self) -> dict:
        """Validate on the whole (sharded) set; save checkpoint_best if it improved.
        Its duration is what max_minutes keeps in reserve (:mod:`.control`)."""
        start = time.monotonic()
        figures: dict = {}
        hook = figure_hook(self.t.plot, self.model, self.dist, figures)
        res = evaluate(
            self.model,
            self.data.val,
            self.dist,
            self.device,
            self.t.seed,
            self.t.mixed_precision,
            hook,
        )
        if self.t.best_key not in res:
            raise ConfigError(
                f"train.best_key={self.t.best_key!r} is not a validation value; "
                f"available: {', '.join(res)}."
            )
        self.last_val = {**res, "_step": self.step}
        self.report.val(res, figures, self.counters)
        if self._improved(res[self.t.best_key]):  # the same on every rank
            self.save(best=True)
        self.stop.reserve = time.monotonic() - start  # the stop repeats it

        return res

    def _improved(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is not None and (
            value >= self.best if self.t.best_mode == "min" else value <= self.best
        ):
            return False
        self.best = value
        return True

    def _benchmarks(self, epoch: int) -> None:
        from .benchmarks import run_benchmarks

        if self.dist.main:
            out = self.dir / "benchmarks" / f"epoch_{epoch}"
            self.report.test(run_benchmarks(self.conf, self.model, out), self.counters)
        if self.dist.enabled:
            torch.distributed.barrier()
