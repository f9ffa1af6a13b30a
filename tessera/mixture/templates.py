"""A bank of K templates of one block architecture, flattened into one ``(K, P)`` Parameter.

Every parameter of the block (conv weights and biases, squeeze-excite, anything a user's block
owns) is a column range of the bank; normalization affine parameters (BN gamma / beta) are in the
bank only with ``mixed_norm=True`` ("mixed batch normalization", paper 002 §4.1). Running
statistics are buffers and are never put in the bank.

>>> from tessera.nn import BLOCKS
>>> bank = TemplateBank(lambda: BLOCKS.get("basic_residual")(8), 3)
>>> tuple(bank.weight.shape), [s.name for s in bank.layout]
((3, 1152), ['conv1.weight', 'conv2.weight'])
>>> [s.name for s in bank.norm_layout]
['bn1.weight', 'bn1.bias', 'bn2.weight', 'bn2.bias']
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from ..core import Slot
from ..errors import ConfigError, ShapeError

__all__ = ["TemplateBank", "ParamSpec", "NORM_TYPES", "is_norm", "block_layout", "stats_layout", "probe_block",
           "eval_once", "check_not_lazy", "restore_buffer"]

NORM_TYPES: tuple[type, ...] = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
"""Modules whose affine parameters count as normalization parameters (BN, IN, GN, LN)."""

def is_norm(module: nn.Module) -> bool:
    return isinstance(module, NORM_TYPES)


@dataclass(frozen=True)
class ParamSpec:
    """One tensor of a block: ``<module path>.<attr>`` with ``shape`` at ``offset`` of a flat row."""

    module: str   # submodule path inside the block ("" for the block itself)
    attr: str     # parameter / buffer name on that submodule
    shape: tuple[int, ...]
    offset: int

    @property
    def name(self) -> str:
        return f"{self.module}.{self.attr}" if self.module else self.attr

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _specs(items: Iterable[tuple[str, str, Tensor]]) -> tuple[ParamSpec, ...]:
    out, off = [], 0
    for mod, attr, t in items:
        out.append(ParamSpec(mod, attr, tuple(t.shape), off))
        off += t.numel()
    return tuple(out)


def block_layout(block: nn.Module, mixed_norm: bool) -> tuple[tuple[ParamSpec, ...], tuple[ParamSpec, ...]]:
    """``(bank layout, norm layout)`` of a block: which parameters are mixed, which are norm affine.

    Raises :class:`ShapeError` for a block with tied (shared) parameters, which cannot be mixed.
    """
    seen: dict[int, str] = {}
    for name, p in block.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            raise ShapeError(f"block parameters {seen[id(p)]} and {name} are one tensor (tied); "
                             f"template mixing needs untied parameters, untie them in the block")
        seen[id(p)] = name
    mixed, norm = [], []
    for path, m in block.named_modules():
        for attr, p in m.named_parameters(recurse=False):
            (norm if is_norm(m) and not mixed_norm else mixed).append((path, attr, p))
    if not mixed:
        raise ShapeError(f"{type(block).__name__} has no parameters to mix; pass a block with weights")
    return _specs(mixed), _specs(norm)


def check_not_lazy(block: nn.Module, what: str = "block") -> None:
    """ShapeError (one line) if ``block`` still has uninitialized lazy parameters (LazyLinear, LazyConv2d)."""
    for name, p in block.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            mod = name.rpartition(".")[0]
            kind = type(block.get_submodule(mod)).__name__
            raise ShapeError(f"{what} has uninitialized lazy parameters ({mod or 'root'}: {kind}); run it once on an "
                             f"example input or give the layer explicit sizes before building templates")


def eval_once(module: nn.Module, args: tuple, kwargs: dict | None, fail: Callable[[str], str]) -> Any:
    """``module(*args, **kwargs)`` in eval mode without grad (training flags restored after): a failure
    becomes ``ShapeError(fail(first line of the error))``."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            return module(*args, **(kwargs or {}))
    except (RuntimeError, TypeError, ValueError, IndexError, AssertionError) as e:
        raise ShapeError(fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)) from None
    finally:
        for m, was in modes:
            m.training = was


def probe_block(block: nn.Module, args: tuple, kwargs: dict | None = None, what: str = "block") -> Tensor:
    """Run ``block(*args, **kwargs)`` once (eval mode, no grad) and check that it maps its input tensor
    ``args[0]`` to ONE tensor of the same shape, as a layer of a mixture body must; one-line ShapeError otherwise.

    >>> probe_block(nn.Linear(4, 4), (torch.zeros(2, 4),)).shape
    torch.Size([2, 4])
    >>> probe_block(nn.Linear(4, 8), (torch.zeros(2, 4),))
    Traceback (most recent call last):
    ...
    tessera.errors.ShapeError: block (Linear) maps an input of shape (2, 4) to (2, 8); blocks of a mixture body must keep the shape (same width in and out)
    """
    check_not_lazy(block, what)
    x = args[0]
    kind = type(block).__name__
    out = eval_once(block, args, kwargs, lambda msg: f"{what} ({kind}) fails on an input of shape {tuple(x.shape)}: "
                    f"{msg}; make the block accept the body's activations (width, embed_dim) and the extra arguments")
    if not isinstance(out, Tensor):
        raise ShapeError(f"{what} ({kind}) returns a {type(out).__name__}, not a tensor; wrap it so that forward "
                         f"returns the next activation only")
    if out.shape != x.shape:
        raise ShapeError(f"{what} ({kind}) maps an input of shape {tuple(x.shape)} to {tuple(out.shape)}; blocks of a "
                         f"mixture body must keep the shape (same width in and out)")
    return out


def restore_buffer(m: nn.Module, attr: str, value: Tensor) -> None:
    """Make a bound statistic view a real buffer again, in BN's registration order."""
    m.__dict__.pop(attr, None)
    m._buffers[attr] = value
    first = [k for k in ("running_mean", "running_var") if k in m._buffers]
    m._buffers = {**{k: m._buffers[k] for k in first}, **m._buffers}


def stats_layout(block: nn.Module) -> tuple[ParamSpec, ...]:
    """Layout of the block's normalization running statistics (running_mean / running_var)."""
    items = []
    for path, m in block.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            for attr in ("running_mean", "running_var"):
                t = getattr(m, attr, None)
                if isinstance(t, Tensor):
                    items.append((path, attr, t))
    return _specs(items)


def flatten(block: nn.Module, layout: tuple[ParamSpec, ...]) -> Tensor:
    """The block's tensors of ``layout`` concatenated into one vector ``(P,)``."""
    ts = [getattr(block.get_submodule(s.module), s.attr).detach().reshape(-1) for s in layout]
    return torch.cat(ts) if ts else torch.zeros(0)


def reset_block(block: nn.Module) -> None:
    """Re-draw a block's parameters with each submodule's own ``reset_parameters``."""
    for m in block.modules():
        fn = getattr(m, "reset_parameters", None)
        if callable(fn):
            fn()


class TemplateBank(nn.Module):
    """K templates of one block architecture, flattened into ``weight`` of shape ``(K, P)``.

    Args:
        block: a block module (templates are deep copies re-initialized with each submodule's
            ``reset_parameters`` or with ``init``), or a zero-argument factory returning a new block.
        num_templates: K >= 1.
        mixed_norm: put normalization gamma / beta in the bank too (mixed BN).
        init: optional ``fn(template_module)`` applied to each template after construction.

    ``layout`` lists the mixed tensors (module path, attr, shape, offset in a row), ``norm_layout``
    the normalization affine tensors kept out of the bank, ``stats_layout`` the running statistics.
    Templates must have identical parameter names and shapes (``ShapeError`` otherwise).
    """

    def __init__(self, block: nn.Module | Callable[[], nn.Module], num_templates: int, *,
                 mixed_norm: bool = False, init: Callable[[nn.Module], None] | None = None):
        super().__init__()
        if not isinstance(num_templates, int) or isinstance(num_templates, bool) or num_templates < 1:
            raise ConfigError(f"num_templates must be an int >= 1, got {num_templates!r}; use K=1 or more templates")
        if isinstance(block, nn.Module):
            check_not_lazy(block)
        templates = self._make(block, num_templates)
        check_not_lazy(templates[0])
        if init is not None:
            for t in templates:
                init(t)
        self.num_templates, self.mixed_norm = num_templates, mixed_norm
        self.layout, self.norm_layout = block_layout(templates[0], mixed_norm)
        self.stats_layout = stats_layout(templates[0])
        ref = [(n, tuple(p.shape)) for n, p in templates[0].named_parameters()]
        for k, t in enumerate(templates[1:], 1):
            got = [(n, tuple(p.shape)) for n, p in t.named_parameters()]
            if got != ref:
                diff = next(((a, b) for a, b in zip(ref, got) if a != b), (ref[len(got):][:1], got[len(ref):][:1]))
                raise ShapeError(f"template {k} has parameter {diff[1]} where template 0 has {diff[0]}; "
                                 f"a template bank needs K blocks of one architecture (same names and shapes)")
        self.weight = nn.Parameter(torch.stack([flatten(t, self.layout) for t in templates]))  # (K, P)
        self.norm_init = flatten(templates[0], self.norm_layout)       # (Pn,) initial gamma / beta
        self.stats_init = flatten(templates[0], self.stats_layout)     # (S,) initial running stats
        self.__dict__["prototype"] = templates[0]  # a pristine block (not a submodule: no state_dict)

    @staticmethod
    def _make(block: nn.Module | Callable[[], nn.Module], k: int) -> list[nn.Module]:
        if isinstance(block, nn.Module):
            out = [copy.deepcopy(block) for _ in range(k)]
            for t in out[1:]:
                reset_block(t)
            return out
        if not callable(block):
            raise ConfigError(f"block must be an nn.Module or a factory returning one, got {type(block).__name__}")
        out = [block() for _ in range(k)]
        for i, t in enumerate(out):
            if not isinstance(t, nn.Module):
                raise ConfigError(f"block factory returned {type(t).__name__} for template {i}; return an nn.Module")
        return out

    @property
    def numel(self) -> int:
        """P, the number of mixed values per template."""
        return self.weight.shape[1]

    def template(self, k: int) -> nn.Module:
        """Template ``k`` as a standalone module (norm affine and running stats from the prototype).

        >>> from tessera.nn import BLOCKS
        >>> bank = TemplateBank(lambda: BLOCKS.get("basic_residual")(8), 2)
        >>> blk = bank.template(1)
        >>> torch.equal(blk.conv1.weight.reshape(-1), bank.weight[1, :576])
        True
        """
        if not 0 <= k < self.num_templates:
            raise ConfigError(f"template index {k} out of range; the bank has {self.num_templates} templates")
        blk = copy.deepcopy(self.prototype).to(self.weight.device, self.weight.dtype)
        with torch.no_grad():
            for s in self.layout:
                getattr(blk.get_submodule(s.module), s.attr).copy_(
                    self.weight[k, s.offset:s.offset + s.numel].view(s.shape))
        return blk

    def extra_repr(self) -> str:
        return f"K={self.num_templates}, P={self.numel}, tensors={len(self.layout)}, mixed_norm={self.mixed_norm}"


