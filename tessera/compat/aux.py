"""Compatibility methods: DCC (Eq. 1), self-supervised RP (Eq. 2), identical initial weights (IIW).

An auxiliary objective owns a head that is *shared* by every task's extractor. Its ``loss(extractor,
x, y, feats, task)`` is added to the task loss; ``feats = extractor(x)`` is passed in so DCC needs no
second forward pass, while RP runs the extractor on transformed images.

>>> import torch
>>> x = torch.arange(4.).view(1, 1, 2, 2)
>>> xr, yr = RotationTask().make_batch(x)
>>> yr.tolist(), xr[1, 0].tolist()          # 90 degrees counter-clockwise
([0, 1, 2, 3], [[1.0, 3.0], [0.0, 2.0]])
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, ShapeError

__all__ = ["SelfSupervisedTask", "RotationTask", "AuxObjective", "DCC", "RP", "common_classes",
           "identical_init", "load_pretrained", "make_networks"]

Tensor = torch.Tensor


@runtime_checkable
class SelfSupervisedTask(Protocol):
    """Creates labels from unlabelled images: ``make_batch(x) -> (g(x, s), s)``."""

    name: str
    num_classes: int

    def make_batch(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]: ...


class RotationTask:
    """Rotation prediction: label ``k`` means the image was rotated by ``k * 90`` degrees counter-clockwise.

    ``mode="all"`` returns every image under all four rotations (4N examples, Eq. 2's average over S);
    ``mode="random"`` one random rotation per image (N examples; an unbiased estimate, 4x cheaper).
    """

    name = "rotation"
    num_classes = 4

    def __init__(self, mode: str = "all"):
        if mode not in ("all", "random"):
            raise ConfigError(f"RotationTask mode {mode!r}; choose 'all' or 'random'")
        self.mode = mode

    def make_batch(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        if x.dim() != 4 or x.shape[-1] != x.shape[-2]:
            raise ShapeError(f"rotation needs square images (N, C, H, H), got {tuple(x.shape)}; resize them first")
        n = len(x)
        if self.mode == "all":
            xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # (4N, C, H, W)
            return xs, torch.arange(4, device=x.device).repeat_interleave(n)    # (4N,)
        k = torch.randint(0, 4, (n,), generator=generator).to(x.device)       # (N,)
        out = x.clone()
        for r in range(1, 4):
            sel = k == r
            if sel.any():
                out[sel] = torch.rot90(x[sel], r, dims=(2, 3))
        return out, k


def common_classes(*class_lists: Sequence[str]) -> list[str]:
    """Classes present in every list, in the order of the first.

    >>> common_classes(["cat", "dog", "car"], ["car", "cat", "monkey"])
    ['cat', 'car']
    """
    if not class_lists:
        return []
    rest = [set(map(str, c)) for c in class_lists[1:]]
    return [str(c) for c in class_lists[0] if all(str(c) in r for r in rest)]


class AuxObjective(nn.Module):
    """Base class: a shared ``head`` and ``loss(extractor, x, y, feats, task) -> scalar``."""

    name = "aux"

    def __init__(self, head: nn.Module, weight: float = 1.0):
        super().__init__()
        self.head, self.weight = head, float(weight)

    def loss(self, extractor: nn.Module, x: Tensor, y: Tensor, feats: Tensor, task: int,
             generator: torch.Generator | None = None) -> Tensor:
        """This objective's loss on one minibatch; ``generator`` seeds any random draw (per step, from
        the engine's :meth:`~tessera.train.Trainer.generator`, so that resume and ranks agree)."""
        raise NotImplementedError


class DCC(AuxObjective):
    """Discriminating common classes (Eq. 1): cross-entropy of the shared head on common-class examples.

    ``task_classes[t]`` lists task ``t``'s class names (label ``i`` is ``task_classes[t][i]``). The head
    predicts ``len(self.classes)`` common classes. The loss is ``sum_i CE * 1[y_i in C] / batch`` (Eq. 1's
    indicator inside a per-batch mean). ``classes``: use only these common classes (App. C.5 varies
    their number); default all of them.

    >>> d = DCC(nn.Linear(4, 2), [["a", "b", "c"], ["c", "a"]])
    >>> d.classes, d.label_map[1].tolist()
    (['a', 'c'], [1, 0])
    >>> DCC(nn.Linear(4, 1), [["a", "b", "c"], ["c", "a"]], classes=["c"]).label_map[0].tolist()
    [-1, -1, 0]
    """

    name = "dcc"

    def __init__(self, head: nn.Module, task_classes: Sequence[Sequence[str]], weight: float = 1.0,
                 classes: Sequence[str] | None = None):
        super().__init__(head, weight)
        common = common_classes(*task_classes)
        if len(task_classes) < 1 or not common:
            shown = "; ".join(f"task {t}: {list(c)[:5]}" for t, c in enumerate(task_classes))
            raise ConfigError(f"DCC needs classes common to all tasks, but these share none ({shown}); "
                              f"use RP (rotation prediction) for tasks without common classes")
        if classes is not None:
            extra = [str(c) for c in classes if str(c) not in common]
            if extra or not classes:
                raise ConfigError(f"DCC classes={list(classes)[:5]}: {extra[:3] or 'empty'} not among the common "
                                  f"classes {common[:10]}; pass a non-empty subset of them")
            keep = {str(c) for c in classes}
            common = [c for c in common if c in keep]
        self.classes = common
        idx = {c: i for i, c in enumerate(self.classes)}
        for t, cl in enumerate(task_classes):  # buffers: move with .to(device), not saved as parameters
            self.register_buffer(f"_map{t}", torch.tensor([idx.get(str(c), -1) for c in cl]), persistent=False)
        self.num_tasks = len(task_classes)

    @property
    def label_map(self) -> list[Tensor]:
        """Per task: a tensor mapping its labels to common-class indices (-1: not common)."""
        return [getattr(self, f"_map{t}") for t in range(self.num_tasks)]

    def loss(self, extractor: nn.Module, x: Tensor, y: Tensor, feats: Tensor, task: int,
             generator: torch.Generator | None = None) -> Tensor:
        m = self.label_map[task][y]  # (N,) common index or -1
        keep = m >= 0
        if not keep.any():
            return feats.sum() * 0.0
        logits = self.head(feats[keep])  # (n, |C|)
        if logits.shape[1] != len(self.classes):
            raise ShapeError(f"DCC head outputs {logits.shape[1]} classes but there are {len(self.classes)} common "
                             f"classes; build the head with num_classes={len(self.classes)}")
        return F.cross_entropy(logits, m[keep], reduction="sum") / len(y)


class RP(AuxObjective):
    """Shared self-supervised head (Eq. 2); rotation prediction by default, any SelfSupervisedTask works.

    Random transformations (``RotationTask("random")``) are drawn from the ``generator`` passed to
    :meth:`loss` (the training schemes pass the engine's per-step generator), else from the one given
    here, else from torch's global RNG.
    """

    name = "rp"

    def __init__(self, head: nn.Module, task: SelfSupervisedTask | None = None, weight: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__(head, weight)
        self.task = task if task is not None else RotationTask()
        if not isinstance(self.task, SelfSupervisedTask):
            raise ConfigError(f"{type(self.task).__name__} is not a SelfSupervisedTask (needs name, num_classes, "
                              f"make_batch); implement those three")
        self.generator = generator

    def loss(self, extractor: nn.Module, x: Tensor, y: Tensor | None = None, feats: Tensor | None = None,
             task: int = 0, generator: torch.Generator | None = None) -> Tensor:
        xs, ys = self.task.make_batch(x, generator if generator is not None else self.generator)
        logits = self.head(extractor(xs))  # (M, num_classes)
        if logits.shape[1] != self.task.num_classes:
            raise ShapeError(f"RP head outputs {logits.shape[1]} classes but {self.task.name} has "
                             f"{self.task.num_classes}; build the head with num_classes={self.task.num_classes}")
        return F.cross_entropy(logits, ys)


# ---------------------------------------------------------------------------------------------- IIW

Weights = nn.Module | Mapping[str, Tensor]


def _state(src: Weights) -> Mapping[str, Tensor]:
    return src.state_dict() if isinstance(src, nn.Module) else src


def identical_init(models: Sequence[nn.Module], source: Weights | None = None) -> Sequence[nn.Module]:
    """Give every model the same weights: ``source``'s (random or pretrained), else ``models[0]``'s."""
    sd = _state(source if source is not None else models[0])
    for m in models:
        own = m.state_dict()
        bad = sorted(set(own) ^ set(sd)) or [k for k in own if own[k].shape != sd[k].shape]
        if bad:
            raise ShapeError(f"identical initial weights need identical architectures; {bad[0]!r} differs; "
                             f"use RP or DCC for different architectures")
        m.load_state_dict(sd)
    return models


def load_pretrained(model: nn.Module, weights: Weights) -> nn.Module:
    """Copy ``weights`` into ``model``; every key of ``weights`` must exist in ``model`` with its shape.

    Keys ``weights`` lacks (e.g. a classifier for another number of classes) keep ``model``'s own values.

    >>> m = load_pretrained(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 3)), {"0.bias": torch.ones(2)})
    >>> m[0].bias.tolist()
    [1.0, 1.0]
    """
    sd, own = _state(weights), model.state_dict()
    bad = [k for k in sd if k not in own or tuple(own[k].shape) != tuple(sd[k].shape)]
    if bad:
        k = bad[0]
        what = "is not in the model" if k not in own else f"has shape {tuple(sd[k].shape)}, the model {tuple(own[k].shape)}"
        raise ShapeError(f"pretrained weight {k!r} {what}; pretrain the same architecture (drop the keys that differ)")
    model.load_state_dict({**own, **{k: v for k, v in sd.items()}})
    return model


def make_networks(build_fn: Callable[[], nn.Module], n: int, seed: int, iiw: bool = False,
                  pretrained: Weights | Sequence[Weights] | None = None) -> list[nn.Module]:
    """``n`` networks from ``build_fn``: identical (IIW: seeded once) or distinct seeds.

    ``pretrained``: with ``iiw``, one set of weights every network starts from (the paper's identical
    *pre-trained* weights); without ``iiw``, one set per network (*different* pre-trained weights).
    A set may cover only part of the network (see :func:`load_pretrained`); the rest is seeded as usual.

    >>> a, b = make_networks(lambda: nn.Linear(3, 2), 2, seed=0, iiw=True)
    >>> torch.equal(a.weight, b.weight)
    True
    """
    nets = []
    for i in range(n):
        torch.manual_seed(seed * 1000 + (0 if iiw else i))
        nets.append(build_fn())
    if pretrained is None:
        if iiw:
            identical_init(nets, copy.deepcopy(nets[0]))
        return nets
    if iiw:
        if not isinstance(pretrained, (nn.Module, Mapping)):
            raise ConfigError("IIW starts every network from ONE set of pretrained weights; pass a module or a "
                              "state dict, not a list")
        load_pretrained(nets[0], pretrained)
        return list(identical_init(nets, copy.deepcopy(nets[0])))
    if isinstance(pretrained, (nn.Module, Mapping)) or len(pretrained) != n:
        raise ConfigError(f"without IIW each of the {n} networks needs its own pretrained weights (one set would "
                          f"make them identical); pass a list of {n}, or iiw=True")
    return [load_pretrained(m, w) for m, w in zip(nets, pretrained)]
