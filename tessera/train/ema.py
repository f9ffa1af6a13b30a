"""Exponential moving average of a module's weights, for evaluation (paper 002, App. A.2).

After every optimizer step: ``shadow <- d * shadow + (1 - d) * param`` for every floating-point
parameter and buffer, with ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates when ``warmup``
is on (TensorFlow's ``ExponentialMovingAverage(num_updates=n)``), so short runs are not dominated by
the initial weights. Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied.

>>> m = nn.Linear(1, 1, bias=False); _ = m.weight.data.fill_(0.)
>>> ema = EMA(m, decay=0.5, warmup=False)
>>> _ = m.weight.data.fill_(1.); ema.update(m)
>>> ema.shadow["weight"].item()
0.5
>>> with ema.swapped_into(m):
...     m.weight.item()
0.5
>>> m.weight.item()
1.0
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copies of ``module.state_dict()`` tensors, updated in place with :meth:`update`."""

    def __init__(self, module: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone() for k, v in module.state_dict(keep_vars=False).items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        d = self.current_decay()
        floats_s, floats_p = [], []
        for k, v in module.state_dict(keep_vars=False).items():
            s = self.shadow[k]
            if s.is_floating_point():
                floats_s.append(s)
                floats_p.append(v.detach())
            else:
                s.copy_(v)
        if floats_s:
            # shadow <- d * shadow + (1 - d) * param == shadow + (1 - d) * (param - shadow)
            torch._foreach_lerp_(floats_s, floats_p, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Write the shadow weights into ``module`` (permanently)."""
        sd = module.state_dict(keep_vars=False)
        for k, v in sd.items():
            v.copy_(self.shadow[k])

    @contextmanager
    def swapped_into(self, module: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the shadow weights into ``module``; the live weights come back exactly."""
        sd = module.state_dict(keep_vars=False)
        backup = {k: v.detach().clone() for k, v in sd.items()}
        try:
            with torch.no_grad():
                for k, v in sd.items():
                    v.copy_(self.shadow[k])
            yield module
        finally:
            with torch.no_grad():
                for k, v in sd.items():
                    v.copy_(backup[k])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = sorted(set(self.shadow) - set(tensors))
        unexpected = sorted(set(tensors) - set(self.shadow))
        if missing or unexpected:
            from ..errors import CheckpointError
            what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
            raise CheckpointError(f"EMA checkpoint does not match the model ({what}); resume with the same model config")
        with torch.no_grad():
            for k, v in tensors.items():
                self.shadow[k].copy_(v)
        self.num_updates = int(num_updates)
