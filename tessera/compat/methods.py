"""From "tasks + a compatibility method" to trained, recombinable networks in one call (Sec. 3-4).

Methods are ``+``-joined names: ``independent``, ``IIW``, ``RP``, ``DCC`` (any combination, e.g.
``IIW+RP+DCC``) and ``upper_bound`` (independent networks, each with its *own* rotation head, as in
the paper's upper bound). :func:`train_compatible` builds one network per task from a
:class:`NetSpec`, splits each into extractor and head, adds the method's shared auxiliary heads and
trains them with the joint or incremental scheme on the engine.

>>> sorted(parse_method("IIW+DCC+RP"))
['DCC', 'IIW', 'RP']
>>> METHODS[-1], len(METHODS)
('upper_bound', 9)
>>> from tessera.compat.tasks import load_pair
>>> from tessera.train import TrainConfig
>>> a, b = load_pair("digits_domains", size=8, n_train=64)
>>> cfg = TrainConfig(steps=2, batch_size=16, progress="off", ema={"enabled": False},
...                   optim={"name": "adam", "lr": 2e-3, "eps": 1e-8, "weight_decay": 0.0})
>>> tr = train_compatible("IIW+RP", [a, b], NetSpec("resnet", {"width": 2}), cfg)
>>> [m.name for m in tr.members], [x.name for x in tr.aux]
(['digits:original', 'digits:boundary'], ['rp'])
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..train import TrainConfig
from .aux import DCC, RP, AuxObjective, RotationTask, Weights, common_classes, make_networks
from .components import split_at
from .models import build
from .schemes import Member, train_incremental, train_joint
from .tasks import LabelledTask

__all__ = ["METHODS", "parse_method", "NetSpec", "Trained", "train_compatible", "per_member"]

METHODS = ("independent", "IIW", "RP", "DCC", "IIW+RP", "IIW+DCC", "RP+DCC", "IIW+RP+DCC", "upper_bound")
_TOKENS = {"IIW", "RP", "DCC"}


def parse_method(name: str) -> frozenset[str]:
    """``"IIW+RP"`` -> {"IIW", "RP"}; ``"independent"`` -> {}; ``"upper_bound"`` -> {"OWN_RP"}."""
    if name == "independent":
        return frozenset()
    if name == "upper_bound":
        return frozenset({"OWN_RP"})
    toks = frozenset(t.strip() for t in name.split("+"))
    if not toks or not toks <= _TOKENS:
        raise ConfigError(f"unknown method {name!r}; use independent, upper_bound or a '+'-join of IIW, RP, DCC")
    return toks


@dataclass
class NetSpec:
    """Which network to build (a name in :data:`tessera.compat.models.NETS`) and where to split it."""

    net: str = "resnet"
    kwargs: dict[str, Any] = field(default_factory=lambda: {"width": 8})
    split: str | None = None  # None: the network's ``split_point``

    def parts(self, num_classes: int) -> tuple[nn.Sequential, nn.Sequential]:
        net = build(self.net, num_classes=num_classes, **self.kwargs)
        return split_at(net, self.split or net.split_point)  # type: ignore[arg-type]

    def head(self, num_classes: int) -> nn.Sequential:
        return self.parts(num_classes)[1]

    def architecture(self) -> dict[str, Any]:
        return {"net": self.net, "kwargs": dict(self.kwargs), "split": self.split}  # None: the net's split_point


@dataclass
class Trained:
    """What :func:`train_compatible` returns: members (extractor + head per task), shared aux objectives,
    wall seconds, and the number of scalars trained (every run's optimizer parameters, each once)."""

    method: str
    members: list[Member]
    aux: list[AuxObjective]
    seconds: float
    trained_params: int


def per_member(config: TrainConfig, members: int) -> TrainConfig:
    """``config`` given per network (steps, warmup, step-schedule interval) as the global-step config of
    ``members`` networks trained jointly (round robin: each gets every ``members``-th step).

    >>> c = per_member(TrainConfig(steps=100, schedule={"name": "step", "step_size": 25}), 2)
    >>> c.steps, c.schedule.step_size
    (200, 50)
    """
    s = config.schedule
    sched = replace(s, step_size=s.step_size * members, warmup_steps=s.warmup_steps * members)
    return replace(config, steps=None if config.steps is None else config.steps * members, schedule=sched)


def train_compatible(method: str, tasks: Sequence[LabelledTask], spec: NetSpec, config: TrainConfig, *,
                     scheme: str = "joint", rotation: str = "all", pretrained: Weights | Sequence[Weights] | None = None,
                     dcc_classes: Sequence[str] | None = None, out_dir: str | Path | None = None,
                     device: str | torch.device | None = None) -> Trained:
    """Build one network per task, add the method's auxiliary heads, train with ``scheme``.

    ``config`` is per network: ``config.steps`` minibatches for each network (joint training runs
    ``len(tasks) * steps`` global steps, see :func:`per_member`; incremental training one run of
    ``steps`` per network, in the order of ``tasks``). ``config.seed`` seeds the initial weights.
    ``rotation``: :class:`RotationTask` mode ("all" = Eq. 2 exactly, "random" = one rotation per image).
    ``pretrained``: initial weights (see :func:`~tessera.compat.aux.make_networks`: one set with IIW, one
    per task without). ``dcc_classes``: train DCC on these common classes only (default: all).
    ``out_dir``: the engine runs' directory (resumable).
    """
    toks = parse_method(method)
    if scheme not in ("joint", "incremental"):
        raise ConfigError(f"scheme {scheme!r}; choose 'joint' or 'incremental'")
    ncls = [len(t.classes) for t in tasks]
    if "IIW" in toks and len(set(ncls)) > 1:
        raise ConfigError(f"IIW needs identical architectures but the tasks have {ncls} classes; the heads differ")
    seed = config.seed
    if len(set(ncls)) == 1:
        nets = make_networks(lambda: build(spec.net, num_classes=ncls[0], **spec.kwargs), len(tasks), seed,
                             iiw="IIW" in toks, pretrained=pretrained)
    else:
        if pretrained is not None:
            raise ConfigError("pretrained weights need tasks with the same number of classes; drop pretrained")
        nets = []
        for i, n in enumerate(ncls):
            torch.manual_seed(seed * 1000 + i)
            nets.append(build(spec.net, num_classes=n, **spec.kwargs))
    torch.manual_seed(seed * 1000 + 999)  # aux heads: the same init whatever the method
    aux: list[AuxObjective] = []
    if "DCC" in toks:
        classes = [t.classes for t in tasks]
        k = len(dcc_classes) if dcc_classes is not None else len(common_classes(*classes))
        aux.append(DCC(spec.head(max(k, 1)), classes, classes=dcc_classes))
    if "RP" in toks:
        aux.append(RP(spec.head(4), RotationTask(rotation)))
    members = []
    for t, net in zip(tasks, nets):
        ext, head = split_at(net, spec.split or net.split_point)  # type: ignore[arg-type]
        own: list[AuxObjective] = [RP(spec.head(4), RotationTask(rotation))] if "OWN_RP" in toks else []
        members.append(Member(t.name, ext, head, t.x, t.y, t.classes, own))
    t0 = time.perf_counter()
    if scheme == "joint":
        res = [train_joint(members, aux, per_member(config, len(members)), out_dir=out_dir, device=device)]
    else:
        res = train_incremental(members, aux, config, out_dir=out_dir, device=device)
    return Trained(method, members, aux, time.perf_counter() - t0, sum(r["trained_params"] for r in res))
