"""Optimizers and learning-rate schedules.

Schedules are pure functions ``factor(step, total) -> float`` multiplied into each param group's
``initial_lr``; the trainer sets ``group["lr"]`` before every step. A schedule therefore has no state
of its own: resuming at step ``s`` gives the same LR as never having stopped.

>>> cfg = ScheduleConfig(name="cosine", warmup_steps=2, final_lr_frac=0.1)
>>> [round(lr_factor(cfg, s, 11), 3) for s in (0, 1, 2, 6, 10)]
[0.5, 1.0, 1.0, 0.55, 0.1]
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import ConfigError
from .config import OptimConfig, ScheduleConfig

__all__ = ["lr_factor", "build_optimizer", "param_groups_for", "set_lr", "RMSpropTF"]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp with TensorFlow's semantics, as used by the isometric / MobileNet papers (002, App. A.2).

    Differences from ``torch.optim.RMSprop``: the squared-gradient average starts at 1 (not 0), so the
    first steps are small without a warmup; ``eps`` is added *inside* the square root; the learning
    rate is applied inside the momentum buffer. Weight decay is L2 (``g += weight_decay * w``)::

        ms  <- alpha * ms + (1 - alpha) * g^2
        mom <- momentum * mom + lr * g / sqrt(ms + eps)
        w   <- w - mom

    >>> w = nn.Parameter(torch.ones(2)); opt = RMSpropTF([w], lr=0.1, momentum=0.0)
    >>> w.grad = torch.ones(2); opt.step(); w.data   # 1 - 0.1 / sqrt(0.9 + 0.1 + 1e-3)
    tensor([0.9000, 0.9000])
    """

    def __init__(self, params: Iterable[Any], lr: float = 0.01, alpha: float = 0.9, eps: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            grads = [p.grad for p in ps]
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, ps, alpha=group["weight_decay"])
            sq, bufs = [], []
            for p in ps:
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32)
                    st["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if group["momentum"] > 0:
                        st["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                sq.append(st["square_avg"])
                if group["momentum"] > 0:
                    bufs.append(st["momentum_buffer"])
            a = group["alpha"]
            torch._foreach_mul_(sq, a)
            torch._foreach_addcmul_(sq, grads, grads, value=1.0 - a)       # ms <- a ms + (1 - a) g^2
            denom = torch._foreach_add(sq, group["eps"])
            torch._foreach_sqrt_(denom)                                      # sqrt(ms + eps)
            if group["momentum"] > 0:
                torch._foreach_mul_(bufs, group["momentum"])
                torch._foreach_addcdiv_(bufs, grads, denom, value=group["lr"])  # mom <- m mom + lr g / d
                torch._foreach_sub_(ps, bufs)
            else:
                torch._foreach_addcdiv_(ps, grads, denom, value=-group["lr"])
        return loss


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
    span = max(1, total - w - 1)
    t = min(1.0, max(0.0, (step - w) / span))  # 0 right after warmup, 1 at the last step (total - 1)
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
    if cfg.name == "rmsprop_tf":
        opt: torch.optim.Optimizer = RMSpropTF(params, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **kw)
    elif cfg.name == "rmsprop":
        opt = torch.optim.RMSprop(params, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum, **kw)
    elif cfg.name == "adam":
        opt = torch.optim.Adam(params, betas=tuple(cfg.betas), eps=cfg.eps, fused=cfg.fused or None, **kw)
    elif cfg.name == "adamw":
        opt = torch.optim.AdamW(params, betas=tuple(cfg.betas), eps=cfg.eps, fused=cfg.fused or None, **kw)
    elif cfg.name == "sgd":
        opt = torch.optim.SGD(params, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0, **kw)
    else:
        raise ConfigError(f"config key 'train.optim.name': unknown optimizer {cfg.name!r}; use rmsprop, rmsprop_tf, adam, adamw or sgd")
    for g in opt.param_groups:
        g.setdefault("initial_lr", g["lr"])
    return opt


def set_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to ``initial_lr * factor``; return the first group's lr."""
    for g in opt.param_groups:
        g["lr"] = g["initial_lr"] * factor
    return opt.param_groups[0]["lr"]
