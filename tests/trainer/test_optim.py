"""Optimizers and learning-rate schedules from ``train.*``."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from gluefactory.trainer.config import DEFAULT_TRAIN_CONF
from gluefactory.trainer.optim import (
    build_optimizer,
    build_scheduler,
    trainable_parameters,
)
from gluefactory.utils.conf import ConfigError


def conf(**train):
    c = OmegaConf.merge(OmegaConf.create(DEFAULT_TRAIN_CONF), train)
    return c


def lrs(train_conf, n, total=None):
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(trainable_parameters(model, None), train_conf)
    sched = build_scheduler(opt, train_conf, total or n)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_upstream_exp_schedule_per_epoch():
    c = conf(
        lr=1e-4,
        lr_schedule={"type": "exp", "start": 20, "exp_div_10": 10, "on_epoch": True},
    )
    lr = lrs(c, 40)
    assert lr[:20] == [1e-4] * 20
    assert lr[20] == pytest.approx(1e-4 * 10**-0.1)
    assert lr[39] == pytest.approx(1e-6)  # the shipped configs end at ~1e-6


def test_step_factor_and_warmup_cosine():
    lr = lrs(
        conf(
            lr=1.0,
            lr_schedule={"type": "step", "start": 2, "step_size": 3, "gamma": 0.5},
        ),
        9,
    )
    assert lr == [1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    lr = lrs(conf(lr=1.0, lr_schedule={"type": "factor", "start": 3, "factor": 0.1}), 5)
    assert lr == pytest.approx([1, 1, 1, 0.1, 0.1])
    lr = lrs(
        conf(lr=1.0, lr_schedule={"type": "cosine", "warmup": 4, "min_lr_factor": 0.1}),
        14,
        total=14,
    )
    assert lr[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr[9] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(lr[3:], lr[4:]))


def test_any_torch_scheduler_and_optimizer_by_name():
    c = conf(
        optimizer="NAdam",
        optimizer_options={"weight_decay": 0.01},
        lr=0.1,
        lr_schedule={"type": "StepLR", "options": {"step_size": 2, "gamma": 0.1}},
    )
    assert lrs(c, 4) == pytest.approx([0.1, 0.1, 0.01, 0.01])
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(trainable_parameters(model, None), c)
    assert type(opt).__name__ == "NAdam" and opt.defaults["weight_decay"] == 0.01
    c = conf(
        lr=1.0,
        lr_schedule={
            "type": "SequentialLR",
            "options": {
                "schedulers": [
                    {
                        "type": "LinearLR",
                        "options": {"start_factor": 0.5, "total_iters": 2},
                    },
                    {"type": "ExponentialLR", "options": {"gamma": 0.5}},
                ],
                "milestones": [2],
            },
        },
    )
    assert lrs(c, 4) == pytest.approx([0.5, 0.75, 1.0, 0.5])


def test_bad_names_and_options_are_config_errors():
    with pytest.raises(ConfigError, match="Unknown train.optimizer 'adamm'"):
        build_optimizer(
            trainable_parameters(torch.nn.Linear(1, 1), None), conf(optimizer="adamm")
        )
    with pytest.raises(ConfigError, match="do not fit Adam"):
        build_optimizer(
            trainable_parameters(torch.nn.Linear(1, 1), None),
            conf(optimizer_options={"bogus": 1}),
        )
    with pytest.raises(ConfigError, match="Unknown train.lr_schedule.type 'cosin'"):
        lrs(conf(lr_schedule={"type": "cosin"}), 1)
    with pytest.raises(ConfigError, match="exp_div_10 > 0"):
        lrs(conf(lr_schedule={"type": "exp"}), 1)


def test_opt_regexp_freezes_the_rest():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    names = [n for n, _ in trainable_parameters(model, r"^1\.")]
    assert names == ["1.weight", "1.bias"] and not model[0].weight.requires_grad
    with pytest.raises(ConfigError, match="no trainable parameter matching"):
        trainable_parameters(torch.nn.Linear(2, 2), "nothing")
