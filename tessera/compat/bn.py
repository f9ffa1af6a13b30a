"""BatchNorm statistics at recombination time (App. C.1) and freezing modules bit-exactly.

Three ways to normalise with BatchNorm when a network is evaluated (``EVAL_BN_MODES``; not to be
confused with :data:`tessera.mixture.BN_MODES`, which says how a mixture network *shares* BN layers):

* ``"train"``     -- the running statistics aggregated during training (PyTorch's ``eval()``);
* ``"batch"``     -- the statistics of each test batch (the paper's default after recombination);
* ``"recompute"`` -- running statistics recomputed over the whole test set (images only, no labels).

>>> import torch
>>> from torch import nn
>>> bn = nn.BatchNorm1d(3).eval()
>>> with batch_stats(bn):
...     y = bn(torch.randn(8, 3) * 5 + 2)
>>> bool(y.mean(0).abs().max() < 1e-5), bn.running_mean.tolist()   # normalised, buffers untouched
(True, [0.0, 0.0, 0.0])
"""
from __future__ import annotations

import contextlib
import copy
from typing import Iterable, Iterator

import torch
from torch import nn

from ..errors import ConfigError
from ..nn.norm import bn_layers as _tracked_bn_layers
from ..nn.norm import reestimate_bn

__all__ = ["EVAL_BN_MODES", "batch_stats", "frozen", "recompute_stats", "bn_layers", "eval_mode"]

EVAL_BN_MODES = ("train", "batch", "recompute")
_BUFS = ("running_mean", "running_var", "num_batches_tracked")


def bn_layers(*modules: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """All BatchNorm layers inside ``modules`` (each once)."""
    seen: dict[int, nn.modules.batchnorm._BatchNorm] = {}
    for m in modules:
        for sub in m.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                seen.setdefault(id(sub), sub)
    return list(seen.values())


@contextlib.contextmanager
def batch_stats(*modules: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm in ``modules`` normalises by batch statistics and changes no buffer.

    Works in train and eval mode alike: the running buffers are hidden (set to ``None``) and restored on
    exit, so nothing (not even ``num_batches_tracked``) is updated.
    """
    saved = []
    for bn in bn_layers(*modules):
        saved.append((bn, {k: getattr(bn, k) for k in _BUFS}))
        for k in _BUFS:
            setattr(bn, k, None)
    try:
        yield
    finally:
        for bn, bufs in saved:
            for k, v in bufs.items():
                setattr(bn, k, v)


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Inside, ``modules`` get no gradients and keep every tensor bit-identical.

    Parameters are marked ``requires_grad=False`` (so no optimizer holds them); BatchNorm layers stop
    tracking statistics (``track_running_stats=False``): in training mode they normalise by batch
    statistics and leave their running buffers untouched. The buffers stay registered, so a checkpoint
    written inside saves and loads them. Gradients still flow *through* a frozen module to whatever
    feeds it (e.g. an extractor trained against a frozen auxiliary head). Flags are restored on exit.
    """
    params = {id(p): p for m in modules for p in m.parameters()}
    flags = {k: p.requires_grad for k, p in params.items()}
    bns = bn_layers(*modules)
    tracking = [bn.track_running_stats for bn in bns]
    for p in params.values():
        p.requires_grad_(False)
    for bn in bns:
        bn.track_running_stats = False
    try:
        yield
    finally:
        for k, p in params.items():
            p.requires_grad_(flags[k])
        for bn, t in zip(bns, tracking):
            bn.track_running_stats = t


def recompute_stats(module: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """A copy of ``module`` (in eval mode) whose BN running statistics are the exact averages over
    ``batches`` (:func:`tessera.nn.norm.reestimate_bn`)."""
    m = copy.deepcopy(module).eval()
    return reestimate_bn(m, batches, layers=_tracked_bn_layers(m))


@contextlib.contextmanager
def eval_mode(module: nn.Module, bn: str = "batch", batches: Iterable[torch.Tensor] | None = None
              ) -> Iterator[nn.Module]:
    """Yield ``module`` (or a recomputed copy) ready for evaluation under BN mode ``bn``.

    ``batches`` (the test images) are needed for ``"recompute"``. Every submodule's train/eval mode is
    restored on exit.
    """
    if bn not in EVAL_BN_MODES:
        raise ConfigError(f"unknown BN mode {bn!r}; choose one of {', '.join(EVAL_BN_MODES)}")
    modes = [(m, m.training) for m in module.modules()]
    try:
        if bn == "recompute":
            if batches is None:
                raise ConfigError("BN mode 'recompute' needs the test images; pass batches=...")
            yield recompute_stats(module, batches)
        elif bn == "batch":
            module.eval()
            with batch_stats(module):
                yield module
        else:
            module.eval()
            yield module
    finally:
        for m, was in modes:  # every submodule back to its own mode
            m.training = was
