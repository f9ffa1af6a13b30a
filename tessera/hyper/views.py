"""The weight-view registry: how a module's weights are seen as (out, in) matrices for MUiR (paper 003, §3.1).

MUiR cuts every target weight into m x n blocks of a linear map from ``in`` to ``out`` units. A
:class:`WeightView` says where such a weight lives on a module and how it is stored: ``gates`` matrices
stacked along the output dimension (LSTM 4, GRU 3, the q/k/v of ``nn.MultiheadAttention.in_proj_weight``
3), and ``transposed`` when the tensor is stored ``(in, out, *kernel)`` instead of ``(out, in, *kernel)``
(``nn.ConvTranspose*``, ``nn.Embedding`` - a lookup is a linear map from one-hot ids -, and Hugging Face's
GPT-2 ``Conv1D``, PEFT's ``fan_in_fan_out``). Trailing dimensions are kernel positions, one matrix each.

Built in: Linear, Conv1d/2d/3d, ConvTranspose1d/2d/3d, LSTM/GRU/RNN (per gate, projections too),
MultiheadAttention (``in_proj_weight`` as q, k, v - or the separate ``q/k/v_proj_weight`` - and
``out_proj.weight``), Embedding / EmbeddingBag (only when named in ``target_modules``: embeddings are a
model's input adapter), and any class named ``Conv1D`` with an ``nf`` attribute (Hugging Face; recognized
without importing transformers). Teach it another kind in one call:

>>> class Scale(nn.Module):                      # a user layer that stores its kernel (in, out)
...     def __init__(self): super().__init__(); self.kernel = nn.Parameter(torch.randn(6, 4))
>>> register_view(Scale, WeightView("kernel", transposed=True))
>>> [(v.param, v.matrix(torch.Size([6, 4]))) for v in views_of(Scale())]
[('kernel', (4, 6, 1))]
>>> unregister_view(Scale)
>>> views_of(nn.MultiheadAttention(8, 2))
[WeightView(param='in_proj_weight', gates=3, transposed=False), WeightView(param='out_proj.weight', gates=1, transposed=False)]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import nn

from ..errors import ConfigError
from .decompose import WeightPlan, plan_weight

__all__ = ["WeightView", "register_view", "unregister_view", "views_of", "is_default_kind", "plan_view"]


@dataclass(frozen=True)
class WeightView:
    """One weight of a module seen as ``gates`` matrices ``(out, in)`` per kernel position.

    ``param``: dotted path from the module to the Parameter (``"weight"``, ``"out_proj.weight"``).
    """

    param: str
    gates: int = 1
    transposed: bool = False

    def matrix(self, shape: torch.Size) -> tuple[int, int, int]:
        """``(out per gate, in, kernel positions)`` of a tensor of ``shape`` stored as this view says."""
        rows, cols = (int(shape[1]), int(shape[0])) if self.transposed else (int(shape[0]), int(shape[1]))
        return rows // self.gates, cols, math.prod(int(k) for k in shape[2:])

    def fan_in(self, shape: torch.Size) -> int:
        """Inputs feeding one output unit: ``in x kernel positions`` (He init of the generated weight)."""
        _, cols, kpos = self.matrix(shape)
        return cols * kpos


Kind = Union[type, tuple, str, Callable[[nn.Module], bool]]
ViewSpec = Union[str, WeightView, Sequence[Union[str, WeightView]], Callable[[nn.Module], Sequence[WeightView]]]


@dataclass(frozen=True)
class _Entry:
    kind: Kind
    views: Callable[[nn.Module], list[WeightView]]
    default: bool  # targeted by default (all but the first/last layer)

    def matches(self, module: nn.Module) -> bool:
        if isinstance(self.kind, (type, tuple)):
            return isinstance(module, self.kind)
        if isinstance(self.kind, str):
            return any(c.__name__ == self.kind for c in type(module).__mro__)
        return bool(self.kind(module))


def _as_fn(views: ViewSpec) -> Callable[[nn.Module], list[WeightView]]:
    if callable(views) and not isinstance(views, (str, WeightView)):
        return lambda m: list(views(m))  # type: ignore[operator]
    items = [views] if isinstance(views, (str, WeightView)) else list(views)  # type: ignore[arg-type]
    out = []
    for v in items:
        if isinstance(v, str):
            v = WeightView(v)
        if not isinstance(v, WeightView) or not isinstance(v.gates, int) or v.gates < 1:
            raise ConfigError(f"register_view: each view must be a parameter name or WeightView(param, gates>=1, "
                              f"transposed), got {v!r}")
        out.append(v)
    return lambda m: list(out)


def _rnn(m: nn.Module) -> list[WeightView]:
    gates = {"LSTM": 4, "GRU": 3}.get(m.mode, 1)  # type: ignore[union-attr]
    return [WeightView(n, gates if n.startswith(("weight_ih", "weight_hh")) else 1)
            for n in m._flat_weights_names if n.startswith("weight")]  # type: ignore[union-attr]


def _mha(m: nn.Module) -> list[WeightView]:
    qkv = ([WeightView("in_proj_weight", 3)] if m._qkv_same_embed_dim  # type: ignore[union-attr]
           else [WeightView(n) for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight")])
    return qkv + [WeightView("out_proj.weight")]


def _hf_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf")


_BUILTIN: list[_Entry] = [
    _Entry(nn.RNNBase, _rnn, True),
    _Entry(nn.MultiheadAttention, _mha, True),
    _Entry((nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d), _as_fn("weight"), True),
    _Entry((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _as_fn(WeightView("weight", transposed=True)),
           True),
    _Entry(_hf_conv1d, _as_fn(WeightView("weight", transposed=True)), True),
    _Entry((nn.Embedding, nn.EmbeddingBag), _as_fn(WeightView("weight", transposed=True)), False),
]
_USER: list[_Entry] = []


def _entry(module: nn.Module) -> _Entry | None:
    return next((e for e in (*_USER, *_BUILTIN) if e.matches(module)), None)


def register_view(kind: Kind, views: ViewSpec, *, default: bool = True) -> None:
    """Teach MUiR a layer kind: ``kind`` is a class (subclasses match), a class name (duck typing, no import)
    or a predicate ``fn(module) -> bool``; ``views`` a parameter name, a :class:`WeightView`, a list of them,
    or ``fn(module) -> list[WeightView]``. ``default``: targeted when ``target_modules`` is None.
    Registered kinds take precedence over the built-in ones (re-registering a kind replaces it)."""
    if not (isinstance(kind, (type, tuple, str)) or callable(kind)):
        raise ConfigError(f"register_view: kind must be a class, a class name or a predicate, got {kind!r}")
    unregister_view(kind)
    _USER.insert(0, _Entry(kind, _as_fn(views), bool(default)))


def unregister_view(kind: Kind) -> None:
    """Forget a kind registered with :func:`register_view` (built-in kinds stay)."""
    _USER[:] = [e for e in _USER if e.kind is not kind and e.kind != kind]


def views_of(module: nn.Module) -> list[WeightView] | None:
    """The views of ``module``'s own weights, or ``None`` when its kind is not registered."""
    e = _entry(module)
    return None if e is None else e.views(module)


def is_default_kind(module: nn.Module) -> bool:
    """Whether ``module``'s kind is targeted when ``target_modules`` is None."""
    e = _entry(module)
    return e is not None and e.default


def plan_view(view: WeightView, shape: torch.Size, block: tuple[int, int], name: str) -> WeightPlan:
    """:func:`~tessera.hyper.decompose.plan_weight` for a tensor stored as ``view`` says (index in stored order)."""
    if len(shape) < 2:
        return plan_weight(shape, view.gates, block, name)  # raises the one-line ShapeError
    if not view.transposed:
        return plan_weight(shape, view.gates, block, name)
    logical = torch.Size([shape[1], shape[0], *shape[2:]])
    plan = plan_weight(logical, view.gates, block, name)
    plan.index = plan.index.transpose(0, 1).contiguous()  # (in, out, *k): the stored layout
    plan.shape = torch.Size(shape)
    return plan
