"""Moment matching for multi-source adaptation (M3SDA, Peng et al. 2019): two losses and an engine method.

* :func:`moment_distance`: for j = 1..k the j-th raw moments ``E[f^j]`` (per feature) of every
  domain, and the mean L2 distance over domain pairs, summed over j.
* :func:`classifier_discrepancy`: mean L1 distance between two classifiers' class probabilities
  (the min-max of Saito et al. 2018 that M3SDA uses).
* :class:`MomentMatching`: the min-max as a :class:`tessera.train.Method`: each step the two
  classifiers ("critics") learn to classify the sources and *disagree* on the target (``("critics",
  loss)``), then the target's parameters learn to match moments and make the updated critics
  *agree* (``("target", loss)``). The engine backpropagates each loss into that optimizer's
  parameters only. :func:`tessera.adapt.adapt_m3sda` runs it.

>>> import torch
>>> a, b = torch.zeros(5, 3), torch.ones(5, 3)
>>> round(float(moment_distance([a, b], k=1)), 4), float(moment_distance([a, a], k=2))
(1.7321, 0.0)
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from ..train import Optim, Trainer, dist
from ._engine import Recorded, adam, check_target_bn, linear
from .models import DAModel

__all__ = ["moment_distance", "classifier_discrepancy", "MomentMatching"]


def moment_distance(features: Sequence[Tensor], k: int = 2, target: int | None = None,
                    mean: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Moment distance of several domains, summed over orders j = 1..k of ``E[f^j]`` (per feature).

    ``features``: one (N_d, D) tensor per domain (maps are flattened per sample), >= 2 domains.
    ``target=None``: the mean of ``||E[f_a^j] - E[f_b^j]||_2`` over all domain pairs. ``target=i``
    (M3SDA's weighting): mean over the (source i'-target) pairs plus mean over the source-source pairs.
    ``mean`` maps (N, D) -> (D,) (default: the mean over the batch; :class:`MomentMatching` passes
    the mean over every rank's batch under ``torchrun``).
    """
    if len(features) < 2:
        raise ConfigError(f"moment_distance needs at least 2 domains, got {len(features)}")
    if k < 1:
        raise ConfigError(f"moment order k must be >= 1, got {k}")
    fs = [f.flatten(1) for f in features]                  # (N_d, D)
    if len({f.shape[1] for f in fs}) != 1:
        raise ShapeError(f"domains have feature sizes {[f.shape[1] for f in fs]}; take them from one layer")
    n = len(fs)
    t = None if target is None else target % n
    pairs = list(itertools.combinations(range(n), 2))
    groups = ([pairs] if t is None else
              [[p for p in pairs if t in p], [p for p in pairs if t not in p]])
    total = fs[0].new_zeros(())
    for j in range(1, k + 1):
        m = [f.pow(j).mean(0) if mean is None else mean(f.pow(j)) for f in fs]   # per domain (D,)
        for group in groups:
            if group:
                total = total + torch.stack([(m[a] - m[b]).norm() for a, b in group]).mean()
    return total


def classifier_discrepancy(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Mean absolute difference of two classifiers' softmax outputs (N, C) -> scalar."""
    return (logits_a.softmax(-1) - logits_b.softmax(-1)).abs().mean()


def _mean_over_ranks(f: Tensor) -> Tensor:
    """(N, D) -> (D,): the mean over every rank's rows (equal N per rank). Its value is the global
    mean; its gradient flows into this rank's rows as if the mean were local, so that the engine's
    average of the ranks' gradients is the gradient of the global loss."""
    local = f.mean(0)
    total = dist.all_reduce_sum(local.detach().clone()) / dist.world_size()
    return local + (total - local.detach())


class MomentMatching(Recorded):
    """Moment matching + two-classifier discrepancy on the target's own parameters (paper 002 App. D.4).

    Task 0 of the run is the unlabelled target. ``source_embeddings``: one fixed ``(embeddings (n, E),
    labels (n,))`` pool per source; each step draws ``per_source`` of each with the step's generator.
    ``critics``: the two classifiers of the min-max (modules (N, E) -> (N, C)), trained with Adam at
    ``clf_lr`` (optimizer ``"critics"``) and thrown away afterwards. The target's parameters
    (optimizer ``"target"``: Adam, ``lr``, linear to ``final_lr`` or constant) minimise
    ``moment_weight * moment_distance(sources + [target], k) + discrepancy_weight * discrepancy``.
    Records ``clf_loss``, ``moment`` and ``discrepancy``. ``target_bn`` as in :class:`~tessera.adapt.ADDA`.
    """

    def __init__(self, model: DAModel, target: str, source_embeddings: Sequence[tuple[Tensor, Tensor]],
                 critics: Sequence[nn.Module], *, per_source: int, lr: float = 1e-3, final_lr: float | None = None,
                 clf_lr: float = 1e-3, moment_weight: float = 1.0, discrepancy_weight: float = 1.0, k: int = 2,
                 target_bn: str = "eval"):
        super().__init__()
        if len(critics) != 2:
            raise ConfigError(f"moment matching needs two critics, got {len(critics)}")
        if not source_embeddings or any(y is None for _, y in source_embeddings):
            raise ConfigError("moment matching needs at least one labelled source embedding pool")
        self.model, self.target, self.pools = model, target, list(source_embeddings)
        self.critics = nn.ModuleList(critics)
        self.train_bn = check_target_bn(target_bn)
        self.per, self.k, self.lr, self.final_lr, self.clf_lr = int(per_source), int(k), lr, final_lr, clf_lr
        self.mw, self.dw = float(moment_weight), float(discrepancy_weight)

    def modules(self) -> dict[str, nn.Module]:
        return {"critics": self.critics}

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        return {"critics": Optim(list(self.critics.parameters()), config=adam(self.clf_lr), schedule=linear(1, None)),
                "target": Optim(list(self.model.target_parameters(self.target).values()), config=adam(self.lr),
                                schedule=linear(self.lr, self.final_lr))}

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.per % trainer.world:
            raise ConfigError(f"{self.per} source samples per step are not divisible by the {trainer.world} ranks; "
                              f"use a batch size whose share per source is a multiple of {trainer.world}")
        self.pools = [(e.to(trainer.device), y.to(trainer.device)) for e, y in self.pools]

    def training_step(self, trainer: Trainer, step: int) -> Iterator[tuple[str, Tensor]]:
        self.model.set_adapt_mode(self.target, self.train_bn)
        xt, _ = trainer.batch(0)                                        # this rank's target shard (n, ...)
        es, ys = [], []
        for i, (e, y) in enumerate(self.pools):
            idx = trainer.shard(torch.randint(len(e), (self.per,), generator=trainer.generator(i))).to(e.device)
            es.append(e[idx])                                           # (per / W, E) fixed source embeddings
            ys.append(y[idx])
        et = self.model.embed(self.model.features(xt, self.target))    # (n, E) with grad into the target
        c1, c2 = self.critics
        src, lab = torch.cat(es), torch.cat(ys)
        ce = F.cross_entropy(c1(src), lab) + F.cross_entropy(c2(src), lab)
        clf_loss = ce - classifier_discrepancy(c1(et.detach()), c2(et.detach()))
        trainer.record("clf_loss", clf_loss)
        yield "critics", clf_loss                                       # the engine steps the critics
        mean = _mean_over_ranks if trainer.world > 1 else None
        md = moment_distance(es + [et], k=self.k, target=-1, mean=mean)
        disc = classifier_discrepancy(c1(et), c2(et))                  # the updated critics
        trainer.record("moment", md)
        trainer.record("discrepancy", disc)
        yield "target", self.mw * md + self.dw * disc

    def settings(self) -> dict[str, Any]:
        """The hyperparameters (stored in checkpoints)."""
        return {"target": self.target, "lr": self.lr, "final_lr": self.final_lr, "clf_lr": self.clf_lr,
                "moment_weight": self.mw, "discrepancy_weight": self.dw, "k": self.k, "per_source": self.per,
                "train_bn": self.train_bn, "pools": [list(e.shape) for e, _ in self.pools]}
