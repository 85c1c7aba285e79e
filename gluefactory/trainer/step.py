"""One optimizer step over ``train.accumulate`` micro-batches, with mixed precision,
gradient clipping and non-finite detection agreed across ranks."""

from __future__ import annotations

import contextlib
import logging
import math

import torch
from torch import nn

from ..models.base_model import BaseModel
from ..utils.conf import ConfigError
from ..utils.errors import UserError
from . import distributed

logger = logging.getLogger(__name__)


class TrainingDiverged(UserError, RuntimeError):
    """Too many non-finite steps in a row: the run stops with advice."""


class WithLoss(nn.Module):
    """forward(data) -> (pred, losses, metrics): the unit wrapped by DDP/compile."""

    def __init__(self, model: BaseModel):
        super().__init__()
        self.model = model

    def forward(self, data: dict):
        pred = self.model(data)
        losses, metrics = self.model.loss(pred, data)
        return pred, losses, metrics


def autocast(device: torch.device, mixed_precision: str | None):
    if mixed_precision is None:
        return contextlib.nullcontext()
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16}[mixed_precision]
    return torch.autocast(device.type, dtype=dtype)


def make_scaler(device: torch.device, mixed_precision: str | None):
    """A GradScaler for float16 on CUDA; None otherwise (bfloat16 needs none)."""
    if mixed_precision == "float16":
        if device.type != "cuda":
            raise ConfigError(
                "--mixed_precision float16 needs a CUDA device; use bfloat16 on the CPU."
            )
        return torch.amp.GradScaler("cuda")
    return None


def grad_norm(params: list[torch.Tensor], clip: float | None) -> torch.Tensor:
    """Total gradient norm (before clipping to ``clip`` when given)."""
    if clip is not None:
        return nn.utils.clip_grad_norm_(params, clip)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
    )


class Stepper:
    """Runs micro-steps and optimizer steps; counts skipped (non-finite) steps."""

    def __init__(self, module, params, optimizer, scaler, conf, dist, device):
        self.module, self.params, self.opt, self.scaler = (
            module,
            params,
            optimizer,
            scaler,
        )
        self.conf, self.dist, self.device = conf, dist, device
        self.accumulate = int(conf.accumulate)
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        self.overflows = 0  # float16 scaler overflows (the scaler adapts; not counted)
        self._bad_loss = None  # device-side flag: no host sync per micro-step
        self._checked_unused = False

    def micro_step(self, data: dict, last: bool):
        """Forward, loss / accumulate, backward (no DDP sync unless ``last``)."""
        ddp = isinstance(self.module, nn.parallel.DistributedDataParallel)
        sync = contextlib.nullcontext() if (last or not ddp) else self.module.no_sync()
        with sync:
            with autocast(self.device, self.conf.mixed_precision):
                pred, losses, metrics = self.module(data)
                loss = losses["total"].float().mean() / self.accumulate
            bad = ~torch.isfinite(loss.detach())
            self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad
            (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.conf.detect_anomaly and not self._checked_unused:
            self._checked_unused = True
            names = [
                n
                for n, p in self.module.named_parameters()
                if p.requires_grad and p.grad is None
            ]
            if names:
                logger.warning("Parameters without gradient: %s", ", ".join(names))
        return pred, losses, metrics

    def optimizer_step(self, step: int) -> bool:
        """Apply the accumulated gradients; False if the step was skipped."""
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        norm = grad_norm(self.params, self.conf.clip_grad)
        bad_loss = bool(self._bad_loss) if self._bad_loss is not None else False
        bad_grad = not math.isfinite(float(norm))
        bad_loss = distributed.any_true(bad_loss, self.dist)
        bad_grad = distributed.any_true(bad_grad, self.dist)
        self._bad_loss = None
        skipped = bad_loss or bad_grad
        if self.scaler is not None:
            if not bad_loss:  # the scaler skips the step itself on inf/nan gradients
                self.scaler.step(self.opt)
            self.scaler.update()
        elif not skipped:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if skipped and self.scaler is not None and not bad_loss:
            self.overflows += 1
            logger.info(
                "float16 gradient overflow at step %d: the scaler lowers its scale.",
                step,
            )
            return False
        if skipped:
            self.nonfinite_total += 1
            self.nonfinite_in_a_row += 1
            what = "loss" if bad_loss else "gradient"
            logger.warning(
                "Non-finite %s at step %d: step skipped (%d in a row, %d in all).",
                what,
                step,
                self.nonfinite_in_a_row,
                self.nonfinite_total,
            )
            if self.nonfinite_in_a_row >= self.conf.max_nonfinite_in_a_row:
                raise TrainingDiverged(
                    f"Training diverged: {self.nonfinite_in_a_row} steps in a row had a "
                    f"non-finite {what} (train.max_nonfinite_in_a_row="
                    f"{self.conf.max_nonfinite_in_a_row}). Lower train.lr, set "
                    "train.clip_grad, or try without --mixed_precision float16."
                )
            return False
        self.nonfinite_in_a_row = 0
        return True

    def state_dict(self) -> dict:
        return {
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "overflows": self.overflows,
        }

    def load_state_dict(self, state: dict) -> None:
        self.nonfinite_total = state["nonfinite_total"]
        self.nonfinite_in_a_row = state["nonfinite_in_a_row"]
        self.overflows = state["overflows"]
