"""Optimizers and learning-rate schedules, built from plain settings.

Weight decay is the L2 penalty of classic SGD (coupled into the gradient for sgd,
adagrad, rmsprop and adam; decoupled for adamw) and applies to weight matrices and
kernels only: biases and normalisation gains (1-D tensors) are not decayed, since
shrinking them towards zero regularises nothing useful.

Schedules are stepped once per optimizer step (not per micro-batch), so a trial that
accumulates gradients over k batches follows the same curve over its training run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

OPTIMIZERS = ("sgd", "adagrad", "rmsprop", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear", "exponential")


@dataclass(frozen=True)
class OptimSettings:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_fraction: float = 0.0
    lr_final_factor: float = 0.01

    def __post_init__(self):
        # str() turns the config's str-Enum members into their plain names.
        object.__setattr__(self, "optimizer", choice_name(self.optimizer))
        object.__setattr__(self, "lr_schedule", choice_name(self.lr_schedule))
        checks = [
            (self.optimizer in OPTIMIZERS, "model.optimizer",
             f"must be one of {', '.join(OPTIMIZERS)}"),
            (self.lr > 0, "model.lr", "must be > 0"),
            (0 <= self.momentum < 1, "model.momentum", "must be in [0, 1)"),
            (not self.nesterov or (self.optimizer == "sgd" and self.momentum > 0),
             "model.nesterov", "needs optimizer=sgd and momentum > 0"),
            (self.weight_decay >= 0, "model.weight_decay", "must be >= 0"),
            (self.lr_schedule in SCHEDULES, "model.lr_schedule",
             f"must be one of {', '.join(SCHEDULES)}"),
            (0 <= self.warmup_fraction < 1, "model.warmup_fraction", "must be in [0, 1)"),
            (0 < self.lr_final_factor <= 1, "model.lr_final_factor", "must be in (0, 1]"),
        ]
        for ok, key, rule in checks:
            if not ok:
                raise ValueError(f"{key}={getattr(self, key.split('.')[1])!r} {rule}")


def choice_name(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


def build_optimizer(named_parameters: Iterable[tuple[str, nn.Parameter]], s: OptimSettings
                    ) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for _, p in named_parameters:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": s.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov)
    if s.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=s.lr)
    if s.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=s.lr, momentum=s.momentum)
    if s.optimizer == "adam":
        return torch.optim.Adam(groups, lr=s.lr)
    return torch.optim.AdamW(groups, lr=s.lr)


def lr_factor(step: int, total_steps: int, s: OptimSettings) -> float:
    """Multiplier on the peak lr at optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up from ~0 over the first ``warmup_fraction`` of steps, then the
    schedule decays from 1 to ``lr_final_factor`` at the last step.
    """
    warmup = int(s.warmup_fraction * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if s.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup - 1))
    final = s.lr_final_factor
    if s.lr_schedule == "cosine":
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * progress))
    if s.lr_schedule == "linear":
        return 1 - (1 - final) * progress
    return final ** progress  # exponential


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, s: OptimSettings
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, s))
