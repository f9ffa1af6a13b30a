"""Applications of compatible components (Sec. 5).

* :func:`adapt_with_rp` -- unsupervised domain adaptation: fine-tune an extractor on unlabelled target
  images against the *frozen* rotation head, then recombine it with the source classification head.
* :func:`with_adapter`, :func:`extend_head`, :func:`update_head` -- one head shared by extractors of
  different architectures (1x1 adapters to a common width); the head learns new classes on a frozen
  reference extractor and is then attached to the others.
* :func:`finetune_curve`, :func:`reinit` -- faster transfer: accuracy right after recombination and
  after k fine-tuning steps.

>>> import torch
>>> from torch import nn
>>> head = nn.Sequential(nn.Flatten(), nn.Linear(4, 5))
>>> old = head[1].weight.detach().clone()
>>> head = extend_head(head, 10)
>>> head[1].out_features, torch.equal(head[1].weight[:5], old)
(10, True)
"""
from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError, ShapeError
from ..train import Callback, Trainer, TrainConfig
from .aux import RP, SelfSupervisedTask
from .bn import frozen
from .measure import TestSet, evaluate
from .models import adapter
from .schemes import Member, train_joint

__all__ = ["adapt_with_rp", "with_adapter", "extend_head", "update_head", "finetune_curve", "reinit"]

Tensor = torch.Tensor


def adapt_with_rp(extractor: nn.Module, rp_head: nn.Module, x_target: Tensor, config: TrainConfig,
                  task: SelfSupervisedTask | None = None, *, out_dir: str | Path | None = None
                  ) -> dict[str, Any]:
    """Sec. 5.1: minimise the self-supervised loss on unlabelled ``x_target`` (N, C, H, W), updating only
    ``extractor``; ``rp_head`` stays bit-identical, so the extractor stays compatible with the source head.
    One engine run (:func:`~tessera.compat.schemes.train_joint`; ``out_dir`` resumes it)."""
    rp = RP(rp_head, task)
    with frozen(rp_head):
        return train_joint([Member("target", extractor, None, x_target, None)], [rp], config, out_dir=out_dir)


def with_adapter(extractor: nn.Module, in_channels: int, width: int) -> nn.Sequential:
    """Sec. 5.2: ``extractor`` followed by a 1x1 convolution to the common ``width``."""
    return nn.Sequential(extractor, adapter(in_channels, width))


def _last_linear(head: nn.Module) -> tuple[nn.Module, str, nn.Linear]:
    found = None
    for name, mod in head.named_modules():
        if isinstance(mod, nn.Linear):
            found = (name, mod)
    if found is None:
        raise ShapeError(f"{type(head).__name__} has no nn.Linear classifier layer to extend; give the head one")
    name, lin = found
    parent_name, _, attr = name.rpartition(".")
    return head.get_submodule(parent_name) if parent_name else head, attr, lin


def extend_head(head: nn.Module, num_classes: int) -> nn.Module:
    """Widen the head's last ``nn.Linear`` to ``num_classes`` outputs; old rows are kept, new ones
    initialised as PyTorch does. Returns ``head`` (changed in place)."""
    parent, attr, lin = _last_linear(head)
    if num_classes < lin.out_features:
        raise ShapeError(f"extend_head: the head already predicts {lin.out_features} classes; "
                         f"pass num_classes >= {lin.out_features}")
    new = nn.Linear(lin.in_features, num_classes, bias=lin.bias is not None).to(lin.weight.device)
    with torch.no_grad():
        new.weight[:lin.out_features] = lin.weight
        if lin.bias is not None:
            new.bias[:lin.out_features] = lin.bias
    setattr(parent, attr, new)
    return head


def update_head(reference: nn.Module, head: nn.Module, x: Tensor, y: Tensor, config: TrainConfig, *,
                out_dir: str | Path | None = None) -> dict[str, Any]:
    """Sec. 5.2: train ``head`` on (x, y) through the *frozen* reference extractor (bit-identical).
    One engine run (:func:`~tessera.compat.schemes.train_joint`; ``out_dir`` resumes it)."""
    with frozen(reference):
        return train_joint([Member("reference", reference, head, x, y)], [], config, out_dir=out_dir)


def reinit(module: nn.Module, seed: int) -> nn.Module:
    """A copy of ``module`` with every layer re-initialised (``reset_parameters``), seeded."""
    m = copy.deepcopy(module)
    torch.manual_seed(seed)
    for sub in m.modules():
        if hasattr(sub, "reset_parameters") and sub is not m:
            sub.reset_parameters()
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.reset_running_stats()
    return m


class _Curve(Callback):
    """Accuracy after the listed step counts; the list is checkpointed with the run (exact resume)."""

    def __init__(self, at: Sequence[int], measure: Any):
        self.at, self.measure, self.acc = set(at), measure, {}

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        if step in self.at and str(step) not in self.acc:
            self.acc[str(step)] = self.measure()

    def state_dict(self) -> dict[str, Any]:
        return {"acc": dict(self.acc)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.acc = dict(state["acc"])


def finetune_curve(extractor: nn.Module, head: nn.Module, x: Tensor, y: Tensor, test: TestSet,
                   checkpoints: Sequence[int], config: TrainConfig, bn: str = "batch", *,
                   out_dir: str | Path | None = None) -> list[float]:
    """Sec. 5.3: test accuracy of ``head(extractor(.))`` after each of ``checkpoints`` fine-tuning steps
    (0 = right after recombination). Works on copies; the given modules are not changed.

    One engine run of ``max(checkpoints)`` steps (``config.steps`` is replaced; ``config.schedule``
    spans those steps); the accuracies are measured inside the run and survive a resume from ``out_dir``.
    """
    if sorted(checkpoints) != list(checkpoints) or (checkpoints and checkpoints[0] < 0):
        raise ConfigError(f"checkpoints {list(checkpoints)} must be ascending step counts >= 0")
    ext, hd = copy.deepcopy(extractor), copy.deepcopy(head)
    ev = lambda: evaluate(ext, hd, test.x, test.y, bn=bn)  # noqa: E731
    later = [k for k in checkpoints if k > 0]
    acc = [ev() for k in checkpoints if k == 0]
    if not later:
        return acc
    curve = _Curve(later, ev)
    train_joint([Member("finetune", ext, hd, x, y)], [], replace(config, steps=later[-1]), out_dir=out_dir,
                callbacks=[curve])
    return acc + [curve.acc[str(k)] for k in later]
