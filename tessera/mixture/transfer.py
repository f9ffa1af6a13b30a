"""Transfer to a new task by its mixture weights (paper 002 §4.3 and App. C, Table 9).

A new task's mixture weights start from a source task's (``from_source``), from the accuracy-based
interpolation ``Xi* = sum_v c_v Xi_v`` with ``c_v = a_v / sum a`` (``accuracy_coefficients``), or from
a learned interpolation (:func:`tessera.mixture.learn_interpolation`: train c = softmax(gamma) on
the new task with everything else fixed, on the training engine). Mixture weights are interpolated as probabilities (each Xi_v row sums to
1, so the result does too) and stored back as logits. Then only the allowed parameters are
fine-tuned: :func:`trainable_parameters` freezes the rest and reports the count.

>>> from tessera.mixture import MixtureNet
>>> net = MixtureNet.from_isometric({"a": 10, "b": 10}, num_templates=3, depth=4, channels=8,
...                                 head_channels=(16, 16), patch=4, bn="patch")
>>> interpolate(net, "new", {"a": 0.5, "b": 0.5}, num_classes=10)
>>> params = trainable_parameters(net, "new", ("mixture", "bn", "logits"))
>>> count_parameters(params)      # 4*3 logits + 4*2*(48+48+8) BN patches + 16*10+10 head
1014
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .network import MixtureNet

__all__ = ["from_source", "interpolate", "accuracy_coefficients", "source_accuracies",
           "trainable_parameters", "count_parameters", "TRANSFER_PARTS"]

TRANSFER_PARTS = ("mixture", "bn", "logits", "templates", "adapters")
_EPS = 1e-6


def from_source(model: MixtureNet, task: str, source: str, num_classes: int | None = None,
                copy_head: bool = False) -> None:
    """Add ``task`` whose mixture logits, BN patches and statistics start from ``source``'s."""
    model.add_task(task, num_classes, from_task=source, copy_head=copy_head)


def _probs_to_logits(p: Tensor) -> Tensor:
    return p.clamp_min(_EPS).log()


def interpolate(model: MixtureNet, task: str, coeffs: Mapping[str, float], num_classes: int | None = None,
                copy_head_from: str | None = None) -> None:
    """Set (adding if needed) ``task``'s mixture weights to ``sum_v c_v softmax(xi_v)`` (Eq. 1).

    Coefficients are normalized to sum to 1. BN patches / statistics of a new task are the same
    interpolation of the sources' (statistics are averaged; they are re-estimated in training).
    """
    if not coeffs:
        raise ConfigError("interpolate needs at least one source task with a coefficient")
    srcs = [model._check_task(s) for s in coeffs]
    c = torch.tensor([float(coeffs[s]) for s in srcs], dtype=torch.float64)
    if (c < 0).any() or float(c.sum()) <= 0:
        raise ConfigError(f"interpolation coefficients must be >= 0 with a positive sum, got {dict(coeffs)}")
    c = (c / c.sum()).to(model.bank.weight.device, model.bank.weight.dtype)
    with torch.no_grad():
        probs = torch.stack([model.coefficients(s).detach() for s in srcs])          # (V, L, K)
        lg = _probs_to_logits(torch.einsum("v,vlk->lk", c, probs))  # (L, K)
        if task not in model.mixture:
            model.add_task(task, num_classes, from_task=srcs[int(c.argmax())], mixture_logits=lg)
            if copy_head_from is not None:
                model.heads[task].load_state_dict(model.heads[model._check_task(copy_head_from)].state_dict())
            if model.bn == "patch":
                model.patches[task].copy_(torch.einsum("v,vlp->lp", c, torch.stack([model.patches[s] for s in srcs])))
            getattr(model.stats, task).copy_(
                torch.einsum("v,vs->s", c, torch.stack([getattr(model.stats, s) for s in srcs])))
        else:
            model.mixture[task].copy_(lg)


def accuracy_coefficients(accuracies: Mapping[str, float], chance: float = 0.0) -> dict[str, float]:
    """``c_v = a_v / sum_k a_k`` (App. C); with ``chance`` > 0, ``a_v - chance`` clipped at 0 (ours).

    >>> accuracy_coefficients({"a": 0.9, "b": 0.3})
    {'a': 0.75, 'b': 0.25}
    """
    a = {k: max(float(v) - chance, 0.0) for k, v in accuracies.items()}
    total = sum(a.values())
    if total <= 0:
        return {k: 1.0 / len(a) for k in a}
    return {k: v / total for k, v in a.items()}


@torch.no_grad()
def source_accuracies(model: MixtureNet, sources: Sequence[str], x: Tensor, y: Tensor,
                      batch_size: int = 500) -> dict[str, float]:
    """Accuracy on (x, y) of each source task as is (its mixture, BN statistics and head; eval mode)."""
    was = model.training
    model.eval()
    try:
        out = {}
        for s in sources:
            correct = 0
            for i in range(0, len(y), batch_size):
                correct += int((model(x[i:i + batch_size], task=s).argmax(-1) == y[i:i + batch_size]).sum())
            out[s] = correct / max(len(y), 1)
        return out
    finally:
        model.train(was)


def trainable_parameters(model: MixtureNet, task: str, what: Iterable[str] = ("mixture", "bn", "logits"),
                         freeze_rest: bool = True) -> list[nn.Parameter]:
    """The parameters to fine-tune for ``task``; with ``freeze_rest`` every other one gets requires_grad=False.

    ``what``: ``mixture`` (the task's logits xi), ``bn`` (its BN patches; needs ``bn="patch"``),
    ``logits`` (its head), ``templates`` (the bank), ``adapters`` (input and output adapters).
    """
    model._check_task(task)
    what = tuple(what)
    bad = [w for w in what if w not in TRANSFER_PARTS]
    if bad:
        raise ConfigError(f"unknown part {bad[0]!r}; choose from: {', '.join(TRANSFER_PARTS)}")
    if "bn" in what and model.bn != "patch":
        raise ConfigError(f"this model's BN parameters are {'mixed' if model.bn == 'mixed' else 'shared by tasks'} "
                          f"(bn={model.bn!r}); build it with bn='patch' to tune BN per task, or drop 'bn'")
    out: list[nn.Parameter] = []
    if "mixture" in what:
        out.append(model.mixture[task])
    if "bn" in what:
        out.append(model.patches[task])
    if "logits" in what:
        out.extend(model.heads[task].parameters())
    if "templates" in what:
        out.append(model.bank.weight)
    if "adapters" in what:
        out.extend(model.input_adapter.parameters())
        out.extend(model.output_adapter.parameters())
    if freeze_rest:
        keep = {id(p) for p in out}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    return out


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    """Number of values in ``params`` (each tensor counted once)."""
    seen, n = set(), 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n
