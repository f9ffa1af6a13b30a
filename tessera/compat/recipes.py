"""One call from "two tasks + a method name" to trained, measured networks (Sec. 4's setup).

Methods are ``+``-joined names: ``independent``, ``IIW``, ``RP``, ``DCC`` (any combination, e.g.
``IIW+RP+DCC``) and ``upper_bound`` (independent networks, each with its *own* rotation head, as in
the paper's upper bound).

>>> sorted(parse_method("IIW+DCC+RP"))
['DCC', 'IIW', 'RP']
>>> METHODS[-1], len(METHODS)
('upper_bound', 9)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .aux import DCC, RP, AuxObjective, RotationTask, common_classes, make_networks
from .components import split_at
from .measure import (TestSet, cross_correlation, evaluate, features, own_accuracy, recombination_accuracy,
                      recombination_matrix)
from .models import build
from .schemes import Member, TrainCfg, count_params, train_incremental, train_joint

__all__ = ["METHODS", "parse_method", "TaskData", "NetSpec", "Trained", "train_method", "measure_trained"]

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
class TaskData:
    """A labelled task: train images/labels, a :class:`TestSet`, class names (shared by both)."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    test: TestSet

    @property
    def classes(self) -> Sequence[str]:
        return self.test.classes


@dataclass
class NetSpec:
    """Which network to build and where to split it (see :mod:`tessera.compat.models`)."""

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
    """What :func:`train_method` returns: members (extractor + head per task), shared aux objectives."""

    method: str
    members: list[Member]
    aux: list[AuxObjective]
    seconds: float
    trained_params: int


def train_method(method: str, tasks: Sequence[TaskData], spec: NetSpec, cfg: TrainCfg, *,
                 scheme: str = "joint", rotation: str = "all", device: str | torch.device = "cpu",
                 pretrained: nn.Module | None = None) -> Trained:
    """Build one network per task, add the method's auxiliary heads, train with ``scheme``.

    ``rotation``: :class:`RotationTask` mode ("all" = Eq. 2 exactly, "random" = one rotation per image).
    ``pretrained``: IIW from these weights (a full network of the spec) instead of a random init.
    """
    toks = parse_method(method)
    if scheme not in ("joint", "incremental"):
        raise ConfigError(f"scheme {scheme!r}; choose 'joint' or 'incremental'")
    ncls = [len(t.classes) for t in tasks]
    if "IIW" in toks and len(set(ncls)) > 1:
        raise ConfigError(f"IIW needs identical architectures but the tasks have {ncls} classes; the heads differ")
    if len(set(ncls)) == 1:
        nets = make_networks(lambda: build(spec.net, num_classes=ncls[0], **spec.kwargs), len(tasks), cfg.seed,
                             iiw="IIW" in toks, pretrained=pretrained)
    else:
        nets = []
        for i, n in enumerate(ncls):
            torch.manual_seed(cfg.seed * 1000 + i)
            nets.append(build(spec.net, num_classes=n, **spec.kwargs))
    g = torch.Generator().manual_seed(cfg.seed + 12345)
    torch.manual_seed(cfg.seed * 1000 + 999)  # aux heads: the same init whatever the method
    aux: list[AuxObjective] = []
    if "DCC" in toks:
        classes = [t.classes for t in tasks]
        aux.append(DCC(spec.head(max(len(common_classes(*classes)), 1)), classes))
    if "RP" in toks:
        aux.append(RP(spec.head(4), RotationTask(rotation), generator=g))
    members = []
    for i, (t, net) in enumerate(zip(tasks, nets)):
        ext, head = split_at(net, spec.split or net.split_point)  # type: ignore[arg-type]
        own = [RP(spec.head(4), RotationTask(rotation), generator=g)] if "OWN_RP" in toks else []
        members.append(Member(t.name, ext.to(device), head.to(device), t.x, t.y, t.classes, own))
    for a in aux:
        a.to(device)
    t0 = time.perf_counter()
    n_params = count_params(*[m for mem in members for m in (mem.extractor, mem.head, *mem.own_aux)], *aux)
    if scheme == "joint":
        train_joint(members, aux, cfg)
    else:
        train_incremental(members, aux, cfg)
    return Trained(method, members, aux, time.perf_counter() - t0, n_params)


def measure_trained(tr: Trained, tests: Sequence[TestSet], *, data: str = "extractor",
                    bn_modes: Sequence[str] = ("batch",), correlation: bool = False,
                    max_corr_images: int = 2000) -> dict[str, Any]:
    """Matrix, recombination accuracy and own accuracy per BN mode; optional feature cross-correlation.

    ``own_accuracy``: each network on its own full test set (the "compatibility costs no accuracy"
    check). ``own_accuracy_common``: the same on the classes common to all tasks (the upper bound of
    recombination accuracy; all classes when the tasks share none).
    """
    exts = [m.extractor for m in tr.members]
    heads = [m.head for m in tr.members]
    classes = [m.classes for m in tr.members]
    out: dict[str, Any] = {}
    for bn in bn_modes:
        mat = recombination_matrix(exts, heads, tests, classes, data=data, bn=bn)
        sfx = "" if bn == "batch" else f"_{bn}"
        out[f"matrix{sfx}"] = mat.tolist()
        out[f"recombination_accuracy{sfx}"] = recombination_accuracy(mat)
        out[f"own_accuracy{sfx}"] = own_accuracy(mat)  # diagonal: own head, own test set, all classes
    common = common_classes(*classes)
    if not common or all(set(common) == set(map(str, c)) for c in classes):
        out["own_accuracy_common"] = out["own_accuracy"] if "own_accuracy" in out else None
    else:
        out["own_accuracy_common"] = float(np.mean([
            evaluate(e, h, t.x, t.y, data_classes=t.classes, head_classes=common)
            for e, h, t in zip(exts, heads, tests)]))
    if correlation and len(exts) == 2:
        xs = torch.cat([t.x[:max_corr_images // len(tests)] for t in tests])
        fa, fb = features(exts[0], xs), features(exts[1], xs)
        out["correlation"] = cross_correlation(fa, fb)["mean"]
        out["correlation_permuted"] = cross_correlation(fa, fb, permute=True)["mean"]
    out["train_seconds"] = tr.seconds
    out["trained_params"] = tr.trained_params
    return out
