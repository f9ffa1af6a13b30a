"""Multi-domain classifiers the adaptation algorithms act on, behind one small interface.

Both wrappers expose::

    features(x, domain)      # (N, ...) -> the body's output, before the output adapter
    embed(h)                 # body output -> (N, E), the output adapter
    classify(e)              # (N, E) -> (N, classes): mean logits of the shared heads
    logits(x, domain)        # all of the above
    add_target(name, ...)    # domain-specific part of a new (target) domain
    target_parameters(name)  # {name: Parameter} the only things adaptation may move
    adapt_mode(name)         # context: everything in eval mode except the target's own modules

* :class:`CompositionalDA` — a :class:`~tessera.mixture.MixtureNet` with one task per domain: the
  template bank, adapters and heads are shared, each domain owns its mixture logits (L, K) and its
  BN statistics. Adaptation moves only the target's logits.
* :class:`IsometricDA` — a plain isometric network (no per-domain weights); the target gets its own
  copy of the input adapter, the only part adaptation moves (paper 002, Table 3 "(IA)").

The heads are ``num_heads`` linear layers trained together on the sources (moment matching uses
two, paper 002 §4.4); predictions average their logits.

>>> import torch
>>> m = CompositionalDA.build(["a", "b"], num_classes=3, num_templates=2, depth=3, channels=8,
...                           patch=4, head_channels=(16, 16))
>>> m.logits(torch.rand(2, 1, 8, 8), "a").shape
torch.Size([2, 3])
>>> m.add_target("t", from_domain="b")
>>> list(m.target_parameters("t")), sum(p.numel() for p in m.target_parameters("t").values())
(['net.mixture.t'], 6)
"""
from __future__ import annotations

import contextlib
import copy
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..mixture import MixtureNet
from ..nn import IsometricNet
from .domains import DomainError

__all__ = ["DAModel", "CompositionalDA", "IsometricDA", "ResidualMLP", "mlp_parts"]


class DAModel(nn.Module):
    """Shared heads + the interface above; subclasses define the body."""

    def __init__(self, embed_dim: int, num_classes: int, num_heads: int = 2, dropout: float = 0.0):
        super().__init__()
        if num_heads < 1 or num_classes < 2:
            raise ConfigError(f"need num_heads >= 1 and num_classes >= 2, got {num_heads}, {num_classes}")
        self.num_classes, self.embed_dim = num_classes, embed_dim
        self.heads = nn.ModuleList(nn.Linear(embed_dim, num_classes) for _ in range(num_heads))
        for h in self.heads:
            nn.init.normal_(h.weight, 0, 0.01)
            nn.init.zeros_(h.bias)
        self.dropout = nn.Dropout(dropout)

    # -- the body (subclasses) -------------------------------------------------------------
    domains: list[str]

    def features(self, x: Tensor, domain: str) -> Tensor:
        raise NotImplementedError

    def embed(self, h: Tensor) -> Tensor:
        raise NotImplementedError

    def add_target(self, name: str, **kwargs: Any) -> None:
        raise NotImplementedError

    def target_parameters(self, name: str) -> dict[str, nn.Parameter]:
        raise NotImplementedError

    def target_modules(self, name: str) -> list[nn.Module]:
        """Modules that run in train mode while ``name`` adapts (their BN statistics are the target's own)."""
        raise NotImplementedError

    def activate(self, name: str) -> None:
        """Make ``name``'s own state (e.g. its BN statistics) the one the shared modules hold now
        (a forward with ``domain=name`` does this too)."""
        self._check_domain(name)

    # -- shared ----------------------------------------------------------------------------
    def head_logits(self, e: Tensor) -> list[Tensor]:
        """Every head's logits on embeddings ``e`` (N, E) (after dropout)."""
        e = self.dropout(e)
        return [h(e) for h in self.heads]                   # num_heads x (N, classes)

    def classify(self, e: Tensor) -> Tensor:
        """Mean logits of the heads: (N, E) -> (N, classes)."""
        return torch.stack(self.head_logits(e)).mean(0)

    def logits(self, x: Tensor, domain: str) -> Tensor:
        return self.classify(self.embed(self.features(x, domain)))

    def forward(self, x: Tensor, domain: str) -> Tensor:
        return self.logits(x, domain)

    def _check_domain(self, name: str) -> str:
        if name not in self.domains:
            raise DomainError(f"unknown domain {name!r}; the model has {', '.join(self.domains)}; "
                              f"add it with add_target({name!r})")
        return name

    def source_loss(self, batches: Mapping[str, tuple[Tensor, Tensor]]) -> Tensor:
        """Mean over domains of each domain's cross-entropy, summed over heads."""
        losses = []
        for name, (x, y) in batches.items():
            e = self.embed(self.features(x, name))
            losses.append(sum(F.cross_entropy(lg, y) for lg in self.head_logits(e)))
        return torch.stack(losses).mean()

    def pretrain_groups(self, lr: float, weight_decay: float, mixture_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer groups for source training: L2 ``weight_decay`` on >= 2-d weights except mixture
        logits, whose learning rate is ``mixture_lr_mult * lr``; everything else at ``lr``."""
        decay, rest, mixture = [], [], []
        for n, p in self.named_parameters():
            if ".mixture." in f".{n}":
                mixture.append(p)
            else:
                (decay if p.ndim >= 2 else rest).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay, "lr": lr},
                  {"params": rest, "weight_decay": 0.0, "lr": lr},
                  {"params": mixture, "weight_decay": 0.0, "lr": lr * mixture_lr_mult}]
        return [g for g in groups if g["params"]]

    def set_adapt_mode(self, name: str, target_train: bool = False) -> None:
        """Eval mode everywhere (shared BN statistics frozen, no dropout) except, with ``target_train``,
        the target's own modules (their BN layers then use batch statistics and update the target's)."""
        self._check_domain(name)
        self.eval()
        for m in self.target_modules(name) if target_train else ():
            m.train()

    @contextlib.contextmanager
    def adapt_mode(self, name: str, target_train: bool = True) -> Iterator[None]:
        """:meth:`set_adapt_mode` for the duration of a ``with`` block; every flag is restored after."""
        was = {m: m.training for m in self.modules()}
        self.set_adapt_mode(name, target_train)
        try:
            yield
        finally:
            for m, t in was.items():
                m.training = t


class CompositionalDA(DAModel):
    """A template-mixture network with one task (mixture logits + BN statistics) per domain.

    ``net`` must have no per-task heads (tasks given as a list of names); its output adapter gives
    the (N, E) embedding. The body's output (``features``) is what a domain discriminator sees.
    """

    def __init__(self, net: MixtureNet, num_classes: int, *, num_heads: int = 2, dropout: float = 0.0):
        if net.embed_dim is None:
            raise ConfigError("the MixtureNet needs embed_dim (its output adapter's width)")
        if any(not isinstance(h, nn.Identity) for h in net.heads.values()):
            raise ConfigError("build the MixtureNet with tasks=[names] (no per-task heads); heads are shared here")
        super().__init__(net.embed_dim, num_classes, num_heads, dropout)
        self.net = net

    @classmethod
    def build(cls, domains: Sequence[str], num_classes: int, *, num_templates: int, depth: int,
              num_heads: int = 2, dropout: float = 0.0, bn: str = "mixed", **kwargs: Any) -> "CompositionalDA":
        """From :meth:`MixtureNet.from_isometric` (image inputs); ``kwargs`` go there (channels, patch...)."""
        net = MixtureNet.from_isometric(list(domains), num_templates=num_templates, depth=depth, bn=bn,
                                        dropout=0.0, **kwargs)
        return cls(net, num_classes, num_heads=num_heads, dropout=dropout)

    @property
    def domains(self) -> list[str]:  # type: ignore[override]
        return self.net.tasks

    def features(self, x: Tensor, domain: str, coeff: Tensor | None = None) -> Tensor:
        """Body output of ``domain``; ``coeff`` (L, K) overrides its mixture weights."""
        return self.net.forward_features(x, task=self._check_domain(domain), coeff=coeff)

    def embed(self, h: Tensor) -> Tensor:
        return self.net.output_adapter(h)

    def add_target(self, name: str, *, from_domain: str | None = None, logits: Tensor | None = None) -> None:
        """New domain: logits (L, K) and BN statistics copied from ``from_domain`` (or ``logits`` given)."""
        self.net.add_task(name, None, from_task=from_domain, mixture_logits=logits)

    def set_logits(self, name: str, logits: Tensor) -> None:
        """Overwrite the mixture logits (L, K) of a domain in place."""
        p = self.net.mixture[self._check_domain(name)]
        if logits.shape != p.shape:
            raise ShapeError(f"logits of shape {tuple(logits.shape)}; expected {tuple(p.shape)} (L, K)")
        with torch.no_grad():
            p.copy_(logits)

    def target_parameters(self, name: str) -> dict[str, nn.Parameter]:
        return {f"net.mixture.{name}": self.net.mixture[self._check_domain(name)]}

    def target_modules(self, name: str) -> list[nn.Module]:
        return [self.net.blocks]  # the mixture layers; their BN statistics are bound per domain

    def activate(self, name: str) -> None:
        self.net.set_task(self._check_domain(name))  # bind name's BN statistics into the shared layers


class IsometricDA(DAModel):
    """A plain (non-shared) isometric body: input adapter -> blocks -> output adapter, one per model.

    Sources share everything; a target added with :meth:`add_target` gets its own copy of the input
    adapter, the only part its adaptation trains.
    """

    def __init__(self, input_adapter: nn.Module, blocks: Sequence[nn.Module], output_adapter: nn.Module,
                 embed_dim: int, num_classes: int, sources: Sequence[str], *, num_heads: int = 2,
                 dropout: float = 0.0, channels_last: bool = False):
        super().__init__(embed_dim, num_classes, num_heads, dropout)
        if not sources:
            raise ConfigError("IsometricDA needs the source domain names")
        self.input_adapter, self.blocks, self.output_adapter = input_adapter, nn.ModuleList(blocks), output_adapter
        self.adapters = nn.ModuleDict()     # target -> its own input adapter
        self.sources, self.channels_last = list(sources), channels_last

    @classmethod
    def build(cls, sources: Sequence[str], num_classes: int, *, depth: int, num_heads: int = 2,
              dropout: float = 0.0, **kwargs: Any) -> "IsometricDA":
        """From :class:`~tessera.nn.IsometricNet` (its adapters and blocks; its own head is dropped)."""
        iso = IsometricNet(2, depth=depth, dropout=0.0, **kwargs)
        return cls(iso.input_adapter, list(iso.blocks), iso.output_adapter, iso.embed_dim, num_classes,
                   sources, num_heads=num_heads, dropout=dropout, channels_last=iso.channels_last)

    @property
    def domains(self) -> list[str]:  # type: ignore[override]
        return self.sources + list(self.adapters.keys())

    def features(self, x: Tensor, domain: str) -> Tensor:
        ia = self.adapters[domain] if domain in self.adapters else self.input_adapter
        self._check_domain(domain)
        h = ia(x)                                          # (N, in, H, W) -> (N, C, H', W')
        if self.channels_last and h.dim() == 4:
            h = h.contiguous(memory_format=torch.channels_last)
        for blk in self.blocks:
            h = blk(h)                                     # same shape
        return h

    def embed(self, h: Tensor) -> Tensor:
        return self.output_adapter(h)

    def add_target(self, name: str, **kwargs: Any) -> None:
        """New domain with a copy of the (source-trained) input adapter."""
        if name in self.domains:
            raise DomainError(f"domain {name!r} already exists; pick another name")
        self.adapters[name] = copy.deepcopy(self.input_adapter)

    def target_parameters(self, name: str) -> dict[str, nn.Parameter]:
        if name not in self.adapters:
            raise DomainError(f"{name!r} is not a target of this model; call add_target({name!r}) first")
        return {f"adapters.{name}.{k}": p for k, p in self.adapters[name].named_parameters()}

    def target_modules(self, name: str) -> list[nn.Module]:
        return [self.adapters[name]]


# --------------------------------------------------------------------------------- vector inputs
class ResidualMLP(nn.Module):
    """Residual MLP block for vectors: Linear -> BN -> act -> Linear -> BN, + x. (N, D) -> (N, D).

    >>> ResidualMLP(8, 16)(torch.randn(4, 8)).shape
    torch.Size([4, 8])
    """

    def __init__(self, dim: int, hidden: int, act_layer: Callable[[], nn.Module] = nn.ReLU):
        super().__init__()
        self.fc1, self.bn1, self.act = nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), act_layer()
        self.fc2, self.bn2 = nn.Linear(hidden, dim), nn.BatchNorm1d(dim)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bn2(self.fc2(self.act(self.bn1(self.fc1(x)))))  # (N, D) -> (N, D)


def mlp_parts(in_dim: int, dim: int, embed_dim: int, input_dropout: float = 0.0
              ) -> tuple[nn.Module, Callable[[], nn.Module], nn.Module]:
    """(input adapter (N, in) -> (N, dim), block factory, output adapter (N, dim) -> (N, embed))."""
    ia = nn.Sequential(OrderedDict(drop=nn.Dropout(input_dropout), fc=nn.Linear(in_dim, dim),
                                   bn=nn.BatchNorm1d(dim), act=nn.ReLU()))
    oa = nn.Sequential(OrderedDict(fc=nn.Linear(dim, embed_dim), act=nn.ReLU()))
    return ia, (lambda: ResidualMLP(dim, 2 * dim)), oa
