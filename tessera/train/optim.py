"""Optimizers and learning-rate schedules.

Schedules are pure functions ``factor(step, total) -> float`` multiplied into each param group's
``initial_lr``; the trainer sets ``group["lr"]`` before every step. A schedule therefore has no state
of its own: resuming at step ``s`` gives the same LR as never having stopped.

>>> cfg = ScheduleConfig(name="cosine", warmup_steps=2)
>>> [round(lr_factor(cfg, s, 10), 3) for s in (0, 1, 2, 6, 9)]
[0.5, 1.0, 1.0, 0.5, 0.038]
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import ConfigError
from .config import OptimConfig, ScheduleConfig

__all__ = ["lr_factor", "build_optimizer", "param_groups_for", "set_lr"]


def lr_factor(cfg: ScheduleConfig, step: int, total: int) -> float:
    """LR multiplier at 0-based ``step`` of a schedule ``total`` steps long (warmup then decay)."""
    w = cfg.warmup_steps
    if w and step < w:
        return (step + 1) / w
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "step":
        return cfg.gamma ** ((step - w) // cfg.step_size)
    if cfg.name == "exponential":
        return cfg.gamma ** ((step - w) / cfg.step_size)
    span = max(1, total - w)
    t = min(1.0, max(0.0, (step - w) / span))  # 0 at the end of warmup, 1 at the last step
    lo = cfg.final_lr_frac
    if cfg.name == "cosine":
        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * t))
    if cfg.name == "linear":
        return 1.0 + (lo - 1.0) * t
    raise ConfigError(f"config key 'train.schedule.name': unknown schedule {cfg.name!r}; use constant, cosine, linear, step or exponential")


def param_groups_for(module: nn.Module, weight_decay: float, no_decay_1d: bool = True) -> list[dict[str, Any]]:
    """Split trainable parameters into decayed (>= 2-d) and non-decayed (biases, norm scales) groups."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if (no_decay_1d and p.ndim <= 1) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


def build_optimizer(params: Iterable[Any], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Optimizer from an :class:`OptimConfig`; ``params`` may be tensors or param-group dicts.

    Groups may carry their own ``lr`` (e.g. a higher LR for mixture weights); every group records it
    as ``initial_lr`` so that the schedule scales each group's own peak LR.
    """
    params = list(params)
    kw: dict[str, Any] = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if cfg.name == "rmsprop":
        opt: torch.optim.Optimizer = torch.optim.RMSprop(params, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **kw)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, betas=tuple(cfg.betas), eps=cfg.eps, **kw)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(params, betas=tuple(cfg.betas), eps=cfg.eps, **kw)
    elif cfg.name == "sgd":
        opt = torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **kw)
    else:
        raise ConfigError(f"config key 'train.optim.name': unknown optimizer {cfg.name!r}; use rmsprop, adam, adamw or sgd")
    for g in opt.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return opt


def set_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to ``initial_lr * factor``; return the first group's lr."""
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * factor
    return opt.param_groups[0]["lr"]
