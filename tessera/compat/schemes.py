"""Training schemes (Sec. 3.4): joint (alternating minibatches between tasks) and incremental.

Each task is a :class:`Member`: its own extractor and head, its training data, and optionally private
auxiliary objectives (e.g. its own rotation head, as in the paper's upper bound). Shared auxiliary
objectives (:class:`~tessera.compat.aux.DCC`, :class:`~tessera.compat.aux.RP`) are passed separately;
their heads receive gradients from every task (joint) or are frozen bit-exactly (incremental).

>>> import torch
>>> from torch import nn
>>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
>>> m = Member("toy", nn.Linear(4, 3), nn.Linear(3, 2), x, y)
>>> hist = train_joint([m], [], TrainCfg(steps=3, batch_size=8))
>>> len(hist), sorted(hist[-1])
(3, ['loss', 'member', 'step', 'target'])
"""
from __future__ import annotations

import math
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, TrainingError
from .aux import AuxObjective
from .bn import frozen

__all__ = ["Member", "TrainCfg", "member_losses", "train_joint", "train_incremental", "Batches",
           "trainable_params", "count_params"]

Tensor = torch.Tensor


@dataclass
class Member:
    """One target task: extractor, head, training images ``x`` (N, C, H, W) and labels ``y`` (N,).

    ``classes``: class names (label i is ``classes[i]``); ``own_aux``: auxiliary objectives private to
    this member. ``y=None`` makes a self-supervised-only member (no target loss). ``aux_task``: this
    member's task index for shared objectives (DCC's label maps); default its position in the list.
    """

    name: str
    extractor: nn.Module
    head: nn.Module | None
    x: Tensor
    y: Tensor | None
    classes: Sequence[str] | None = None
    own_aux: list[AuxObjective] = field(default_factory=list)
    aux_task: int | None = None


@dataclass
class TrainCfg:
    """Optimisation settings: Adam, cosine decay, ``steps`` minibatches *per member*."""

    steps: int = 500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"       # "cosine" | "constant"
    seed: int = 0
    log_every: int = 1             # history entry every n steps (0: only the last)

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_size < 1:
            raise ConfigError(f"TrainCfg: steps={self.steps}, batch_size={self.batch_size}; use steps >= 0, batch_size >= 1")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"TrainCfg schedule {self.schedule!r}; choose 'cosine' or 'constant'")


class Batches:
    """Endless shuffled minibatch indices over ``n`` examples (reshuffled each epoch, seeded)."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < 1:
            raise ConfigError("a member has no training examples; pass non-empty x")
        self.n, self.bs = n, min(batch_size, n)
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.g), 0

    def next(self) -> Tensor:
        if self.pos + self.bs > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
        idx = self.perm[self.pos:self.pos + self.bs]
        self.pos += self.bs
        return idx


def member_losses(m: Member, aux: Sequence[AuxObjective], xb: Tensor, yb: Tensor | None, task: int
                  ) -> dict[str, Tensor]:
    """Eq. 1 / Eq. 2 for one minibatch: target loss plus each (shared, then own) auxiliary loss."""
    feats = m.extractor(xb)  # (B, *feature_shape)
    out: dict[str, Tensor] = {}
    if m.head is not None and yb is not None:
        out["target"] = F.cross_entropy(m.head(feats), yb)
    for a in aux:
        out[a.name] = a.weight * a.loss(m.extractor, xb, yb, feats, task)
    for a in m.own_aux:
        out[f"own_{a.name}"] = a.weight * a.loss(m.extractor, xb, yb, feats, 0)
    return out


def trainable_params(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    """Parameters with ``requires_grad`` across ``modules``, each once."""
    seen: dict[int, nn.Parameter] = {}
    for mod in modules:
        for p in mod.parameters():
            if p.requires_grad:
                seen.setdefault(id(p), p)
    return list(seen.values())


def count_params(*modules: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters across ``modules``, shared ones counted once."""
    ps = {id(p): p for m in modules for p in m.parameters() if p.requires_grad or not trainable_only}
    return sum(p.numel() for p in ps.values())


def _modules(members: Sequence[Member], aux: Sequence[AuxObjective]) -> list[nn.Module]:
    mods: list[nn.Module] = []
    for m in members:
        mods += [m.extractor] + ([m.head] if m.head is not None else []) + list(m.own_aux)
    return mods + list(aux)


def train_joint(members: Sequence[Member], aux: Sequence[AuxObjective], cfg: TrainCfg,
                callback: Callable[[int, dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """Joint training: step ``s`` updates on one minibatch of member ``s % T`` (``cfg.steps * T`` steps).

    One Adam optimiser holds every trainable parameter (extractors, heads, shared and own aux heads);
    parameters not used in a step get no gradient and are left alone by Adam. Returns the loss history.
    """
    if not members:
        raise ConfigError("train_joint needs at least one Member")
    mods = _modules(members, aux)
    params = trainable_params(mods)
    if not params:
        raise ConfigError("nothing to train: every parameter is frozen")
    dev = params[0].device
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.steps * len(members)
    batches = [Batches(len(m.x), cfg.batch_size, cfg.seed * 7919 + t) for t, m in enumerate(members)]
    for mod in mods:
        mod.train()
    hist: list[dict[str, float]] = []
    for s in range(total):
        t = s % len(members)
        m = members[t]
        if cfg.schedule == "cosine":
            for g in opt.param_groups:
                g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * s / max(total, 1)))
        idx = batches[t].next()
        xb = m.x[idx].to(dev)
        yb = m.y[idx].to(dev) if m.y is not None else None
        losses = member_losses(m, aux, xb, yb, t if m.aux_task is None else m.aux_task)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss at step {s} (member {m.name}: "
                                f"{ {k: float(v) for k, v in losses.items()} }); lower the learning rate")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (cfg.log_every and s % cfg.log_every == 0) or s == total - 1:
            rec = {"step": s, "member": t, "loss": float(loss.detach()), **{k: float(v.detach()) for k, v in losses.items()}}
            hist.append(rec)
            if callback is not None:
                callback(s, rec)
    return hist


def train_incremental(members: Sequence[Member], aux: Sequence[AuxObjective], cfg: TrainCfg,
                      train_aux_first: bool = True) -> list[list[dict[str, float]]]:
    """Incremental training: member 0 trains with the auxiliary heads (unless ``train_aux_first=False``:
    they are already trained); every later member trains alone with those heads frozen bit-exactly."""
    hists = []
    for i, m in enumerate(members):
        with ExitStack() as stack:
            if i > 0 or not train_aux_first:
                stack.enter_context(frozen(*aux))
            m = replace(m, aux_task=i if m.aux_task is None else m.aux_task)
            hists.append(train_joint([m], aux, replace(cfg, seed=cfg.seed * 31 + i)))
    return hists
