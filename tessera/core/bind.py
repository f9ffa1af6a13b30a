"""Writing generated tensors into an ordinary module's parameters.

A *slot* is one parameter of one submodule (e.g. ``blocks.3.conv_dw.weight``) whose value is taken
from a flat generated vector, either as a zero-copy view (a contiguous range) or by a precomputed
gather index (MUiR tiles, conv kernel positions, LSTM gates). The slot's ``nn.Parameter`` is removed
from the module and replaced, before every forward, by a plain tensor attribute that is part of the
autograd graph; after the forward it is replaced by its detached value, so the module stays
inspectable, ``deepcopy``-able and picklable-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ShapeError

__all__ = ["Slot", "take_parameter", "bind", "WeightWriter"]


@dataclass
class Slot:
    """Where one generated tensor goes: ``module.<name>`` with ``shape``.

    Exactly one of ``offset`` (take ``source[offset : offset + numel]``, a view) and ``index``
    (take ``source[index]``, a gather) is set. ``aliases``: other ``(module, name)`` places that hold
    the same tensor (tied weights); they are bound to the very same generated tensor.
    """

    module: nn.Module
    name: str
    shape: torch.Size
    offset: int | None = None
    index: Tensor | None = None
    aliases: tuple[tuple[nn.Module, str], ...] = ()

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


def take_parameter(module: nn.Module, name: str) -> Tensor:
    """Remove parameter ``name`` from ``module`` (it will be generated) and return its current value."""
    p = module._parameters.get(name)
    if p is None:
        raise ShapeError(f"{type(module).__name__} has no parameter {name!r} to generate; "
                         f"it has {sorted(k for k, v in module._parameters.items() if v is not None)}")
    del module._parameters[name]
    value = p.detach()
    object.__setattr__(module, name, value) if not isinstance(module, nn.RNNBase) else setattr(module, name, value)
    return value


def bind(module: nn.Module, name: str, value: Tensor) -> None:
    """Make ``module.<name>`` the tensor ``value`` (a plain attribute, not a Parameter)."""
    if isinstance(module, nn.RNNBase):
        setattr(module, name, value)  # RNNBase.__setattr__ keeps _flat_weights in sync
    else:
        module.__dict__[name] = value


class WeightWriter:
    """Binds views / gathers of a flat source vector to many slots at once.

    All view slots are chunks of ONE ``split_with_sizes`` of the source, and all gather slots are
    served by ONE ``index_select`` over the concatenated indices, split into per-slot views.
    """

    def __init__(self, slots: list[Slot]):
        self.slots = slots
        self._views = [s for s in slots if s.index is None]
        self._gathers = [s for s in slots if s.index is not None]
        for s in self._gathers:
            if s.index is not None and s.index.numel() != s.numel:
                raise ShapeError(f"slot {s.name}: index has {s.index.numel()} entries for shape {tuple(s.shape)}")
        self._gather_index = (torch.cat([s.index.reshape(-1) for s in self._gathers])  # type: ignore[union-attr]
                              if self._gathers else None)
        self._gather_sizes = [s.numel for s in self._gathers]
        self._split_plan: tuple[int, list[int], list[int]] | None = None  # (source numel, sizes, pick)

    def _plan(self, total: int) -> tuple[list[int], list[int]]:
        """Chunk sizes covering the source so that every view slot is exactly one chunk.

        ``source.narrow`` per slot would make autograd build one full-size gradient per slot in
        backward (O(slots x source)); one ``split_with_sizes`` has a single backward concatenation.
        """
        if self._split_plan is not None and self._split_plan[0] == total:
            return self._split_plan[1], self._split_plan[2]
        order = sorted(range(len(self._views)), key=lambda i: self._views[i].offset)  # type: ignore[arg-type,return-value]
        sizes: list[int] = []
        pick = [0] * len(self._views)
        pos = 0
        for i in order:
            s = self._views[i]
            off = int(s.offset)  # type: ignore[arg-type]
            if off < pos:
                raise ShapeError(f"slot {s.name} overlaps the previous slot at offset {off}; view slots must not overlap")
            if off > pos:
                sizes.append(off - pos)
            pick[i] = len(sizes)
            sizes.append(s.numel)
            pos = off + s.numel
        if pos > total:
            raise ShapeError(f"view slots need {pos} values but the generated source has {total}")
        if pos < total:
            sizes.append(total - pos)
        self._split_plan = (total, sizes, pick)
        return sizes, pick

    def to(self, device: torch.device) -> "WeightWriter":
        if self._gather_index is not None and self._gather_index.device != device:
            self._gather_index = self._gather_index.to(device)
        return self

    def tensors(self, source: Tensor) -> list[Tensor]:
        """The slot values (views or gathers of ``source``, a 1-D tensor), in slot order."""
        out: dict[int, Tensor] = {}
        if self._views:
            sizes, pick = self._plan(source.numel())
            chunks = source.split_with_sizes(sizes)  # one autograd node for every view slot
            for s, j in zip(self._views, pick):
                out[id(s)] = chunks[j].view(s.shape)
        if self._gather_index is not None:
            if self._gather_index.device != source.device:
                self.to(source.device)
            flat = source.index_select(0, self._gather_index)  # (sum numel,)
            for s, chunk in zip(self._gathers, torch.split(flat, self._gather_sizes)):
                out[id(s)] = chunk.view(s.shape)
        return [out[id(s)] for s in self.slots]

    def write(self, source: Tensor) -> None:
        for s, t in zip(self.slots, self.tensors(source)):
            bind(s.module, s.name, t)
            for m, n in s.aliases:
                bind(m, n, t)

    def detach(self) -> None:
        for s in self.slots:
            t = getattr(s.module, s.name, None)
            if isinstance(t, Tensor) and t.grad_fn is not None:
                t = t.detach()
                bind(s.module, s.name, t)
                for m, n in s.aliases:
                    bind(m, n, t)
