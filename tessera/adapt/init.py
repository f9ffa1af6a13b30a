"""Initial mixture weights of a new (target) domain (paper 002, App. C, Table 9; App. D.2).

* ``copy``: the logits of one source (App. D.2 copies the best one). :func:`rank_sources` ranks
  sources without labels (mean prediction entropy on the target, low = confident) or, where labels
  exist, by accuracy (what the paper did).
* ``random``: fresh N(0, 1) logits.
* ``accuracy``: ``Xi = sum_v c_v Xi_v`` with ``c_v = a_v / sum a`` from each source's accuracy a_v on
  the new domain (needs labels).
* ``learned``: ``c = softmax(beta)`` learned by cross-entropy on labelled new-domain data, everything
  else fixed.

Mixing is done on the mixture *weights* softmax(xi) (each layer stays a convex combination of
templates); the result is returned as logits ``log(weights)`` (:func:`interpolated_logits`) for
``CompositionalDA.set_logits``; nothing here changes the model. These mirror
:mod:`tessera.mixture.transfer`, whose ``interpolate`` / ``learn_interpolation`` write into a
:class:`~tessera.mixture.MixtureNet` with per-task heads; here all domains share the heads of a
:class:`CompositionalDA`. The learned interpolation runs on the engine.

>>> import torch
>>> w = {"a": torch.tensor([[1.0, 0.0]]), "b": torch.tensor([[0.0, 1.0]])}
>>> interpolated_logits(w, {"a": 3.0, "b": 1.0}).softmax(-1)
tensor([[0.7500, 0.2500]])
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..mixture import init_logits
from ..mixture.transfer import accuracy_coefficients
from ..train import Optim, Task, Trainer
from ._engine import Recorded, adam, check_target_bn, fit, linear
from .domains import Domain, require_labeled
from .models import CompositionalDA

__all__ = ["interpolated_logits", "source_weights", "rank_sources", "best_source", "random_init", "accuracy_init",
           "learned_init"]

_TINY = 1e-12


def source_weights(model: CompositionalDA, sources: Sequence[str]) -> dict[str, Tensor]:
    """``{source: softmax(xi) (L, K)}`` detached."""
    return {s: model.net.coefficients(s).detach() for s in sources}


def interpolated_logits(weights: Mapping[str, Tensor], coef: Mapping[str, float] | Tensor) -> Tensor:
    """Logits ``log(sum_v c_v w_v)`` (L, K) of a convex combination of mixture weights ``w_v`` (L, K).

    ``coef`` is normalised to sum to 1 (a dict by name, or a tensor in the order of ``weights``).
    """
    names = list(weights)
    c = (torch.as_tensor([float(coef[n]) for n in names]) if isinstance(coef, Mapping) else coef)
    if c.shape != (len(names),) or bool((c < 0).any()) or float(c.sum()) <= 0:
        raise ConfigError(f"interpolation coefficients {c.tolist()} must be >= 0, one per source, not all 0")
    c = c / c.sum()
    w = torch.einsum("v,vlk->lk", c.to(weights[names[0]]), torch.stack([weights[n] for n in names]))  # (L, K)
    return w.clamp_min(_TINY).log()


@torch.no_grad()
def rank_sources(model: CompositionalDA, target: Domain, sources: Sequence[str], by: str = "entropy",
                 n: int = 2000, batch_size: int = 512) -> dict[str, float]:
    """Score each source's mixture weights on target inputs (target BN statistics = that source's).

    ``by="entropy"``: mean prediction entropy (no labels used; lower is better). ``by="accuracy"``:
    accuracy in % (needs labels; higher is better). Returns ``{source: score}``.
    """
    if by not in ("entropy", "accuracy"):
        raise ConfigError(f"rank_sources by {by!r}; choose 'entropy' (label-free) or 'accuracy'")
    if by == "accuracy":
        require_labeled(target, "ranking sources by accuracy")
    x, y = target.x[:n], (None if target.y is None else target.y[:n])
    model.eval()
    out = {}
    for s in sources:
        lg = torch.cat([model.logits(x[i:i + batch_size], s) for i in range(0, len(x), batch_size)])
        if by == "entropy":
            p = lg.softmax(-1)
            out[s] = float(-(p * p.clamp_min(_TINY).log()).sum(-1).mean())
        else:
            out[s] = 100.0 * float((lg.argmax(-1) == y).float().mean())
    return out


def best_source(scores: Mapping[str, float], by: str) -> str:
    """The best-scoring source of :func:`rank_sources` (lowest entropy, or highest accuracy)."""
    return (min if by == "entropy" else max)(scores, key=lambda k: scores[k])


def random_init(model: CompositionalDA, seed: int = 0, std: float = 1.0) -> Tensor:
    """Fresh random logits (L, K) (Table 9 "Random")."""
    return init_logits(model.net.depth, model.net.num_templates, "random", std=std, seed=seed)


def accuracy_init(model: CompositionalDA, accuracies: Mapping[str, float]) -> Tensor:
    """Accuracy-based interpolation (Table 9): ``c_v = a_v / sum_k a_k``
    (:func:`tessera.mixture.transfer.accuracy_coefficients`)."""
    return interpolated_logits(source_weights(model, list(accuracies)), accuracy_coefficients(accuracies))


class _Interpolation(Recorded):
    """Learns ``c = softmax(beta)`` over fixed source mixture weights ``w`` (V, L, K) by cross-entropy."""

    def __init__(self, model: CompositionalDA, target: str, w: Tensor, lr: float, train_bn: bool):
        super().__init__()
        self.model, self.target, self.w, self.lr, self.train_bn = model, target, w, lr, train_bn
        self.holder = nn.Module()
        self.holder.beta = nn.Parameter(torch.zeros(len(w), device=w.device, dtype=w.dtype))

    def modules(self) -> dict[str, nn.Module]:
        return {"interpolation": self.holder}

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        return {"main": Optim([self.holder.beta], config=adam(self.lr), schedule=linear(self.lr, 0.1 * self.lr))}

    def training_step(self, trainer: Trainer, step: int) -> Tensor:
        self.model.set_adapt_mode(self.target, self.train_bn)
        x, y = trainer.batch(0)
        coeff = torch.einsum("v,vlk->lk", self.holder.beta.softmax(0), self.w)    # (V,) x (V, L, K) -> (L, K)
        h = self.model.features(x, self.target, coeff=coeff)
        loss = F.cross_entropy(self.model.classify(self.model.embed(h)), y)
        trainer.record("loss", loss)
        return loss


def learned_init(model: CompositionalDA, target: Domain, sources: Sequence[str], *, steps: int = 100,
                 batch_size: int = 64, lr: float = 0.05, target_bn: str = "eval", seed: int = 0,
                 out_dir: str | Path | None = None, device: str | None = None) -> tuple[Tensor, dict[str, float]]:
    """Learned interpolation (Table 9): ``c = softmax(beta)`` fitted by cross-entropy on labelled target data
    (Adam, ``lr`` decaying linearly to ``lr / 10``; only beta is trained).

    ``target.name`` must be a domain of the model (its BN statistics are used, and updated with
    ``target_bn="train"``). Returns ``(logits (L, K), {source: c_v})``; no model parameter changes.
    """
    require_labeled(target, "learned interpolation")
    train_bn = check_target_bn(target_bn)
    w = torch.stack(list(source_weights(model, sources).values()))            # (V, L, K)
    method = _Interpolation(model, target.name, w, lr, train_bn)
    fit(model, [Task(target.name, train=(target.x, target.y))], method, name="learned_init", steps=steps,
        batch_size=min(batch_size, len(target)), seed=seed, out_dir=out_dir, checkpoint_every=0, device=device,
        settings=dict(target=target.name, sources=list(sources), lr=lr, train_bn=train_bn))
    c = method.holder.beta.detach().softmax(0)
    return interpolated_logits(dict(zip(sources, w)), c), dict(zip(sources, c.tolist()))
