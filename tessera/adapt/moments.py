"""Moment matching for multi-source adaptation (M3SDA, Peng et al. 2019) as losses and one step.

* :func:`moment_distance`: for j = 1..k the j-th raw moments ``E[f^j]`` (per feature) of every
  domain, and the mean L2 distance over domain pairs, summed over j.
* :func:`classifier_discrepancy`: mean L1 distance between two classifiers' class probabilities
  (the min-max of Saito et al. 2018 that M3SDA uses).
* :func:`m3sda_step`: the two classifiers step to classify the sources and *disagree* on the target,
  then the target mapping steps to match moments and make them *agree*. Only parameters inside
  the optimizers you pass move.

>>> a, b = torch.zeros(5, 3), torch.ones(5, 3)
>>> round(float(moment_distance([a, b], k=1)), 4), float(moment_distance([a, a], k=2))
(1.7321, 0.0)
"""
from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError
from .select import step_only

__all__ = ["moment_distance", "classifier_discrepancy", "m3sda_step"]


def moment_distance(features: Sequence[Tensor], k: int = 2, target: int | None = None) -> Tensor:
    """Moment distance of several domains, summed over orders j = 1..k of ``E[f^j]`` (per feature).

    ``features``: one (N_d, D) tensor per domain (maps are flattened per sample), >= 2 domains.
    ``target=None``: the mean of ``||E[f_a^j] - E[f_b^j]||_2`` over all domain pairs. ``target=i``
    (M3SDA's weighting): mean over the (source i'-target) pairs plus mean over the source-source pairs.
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
        m = [f.pow(j).mean(0) for f in fs]                  # per domain (D,)
        for group in groups:
            if group:
                total = total + torch.stack([(m[a] - m[b]).norm() for a, b in group]).mean()
    return total


def classifier_discrepancy(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """Mean absolute difference of two classifiers' softmax outputs (N, C) -> scalar."""
    return (logits_a.softmax(-1) - logits_b.softmax(-1)).abs().mean()


def m3sda_step(target_embed: Callable[[Tensor], Tensor], x_target: Tensor, source_embeds: Sequence[Tensor],
               source_labels: Sequence[Tensor], classifiers: Sequence[nn.Module],
               clf_opt: torch.optim.Optimizer | None, target_opt: torch.optim.Optimizer, *,
               moment_weight: float = 1.0, discrepancy_weight: float = 1.0, k: int = 2) -> dict[str, float]:
    """One M3SDA round on fixed source embeddings.

    1. (if ``clf_opt``) the two ``classifiers`` minimise source cross-entropy minus their
       discrepancy on the (detached) target embeddings;
    2. the target mapping minimises ``moment_weight * moment_distance(sources + [target], k)`` plus
       ``discrepancy_weight * discrepancy`` of the (now fixed) classifiers on the target.

    Args:
        target_embed: ``x -> (N, E)`` through the trainable target mapping (with grad).
        source_embeds, source_labels: one (N_d, E) / (N_d,) per source domain (fixed).
        classifiers: two modules (N, E) -> (N, C); ``clf_opt`` holds their parameters.
        target_opt: holds ONLY the parameters the target mapping may change.

    Returns ``{"moment", "discrepancy", "clf_loss"}`` (values before the target step).
    """
    if len(classifiers) != 2:
        raise ConfigError(f"m3sda_step needs two classifiers, got {len(classifiers)}")
    if len(source_embeds) != len(source_labels) or not source_embeds:
        raise ConfigError("give one label tensor per source embedding tensor (at least one source)")
    et = target_embed(x_target)                             # (N, E) with grad into target params
    c1, c2 = classifiers
    clf_loss = float("nan")
    if clf_opt is not None:
        es, ys = torch.cat([e.detach() for e in source_embeds]), torch.cat(list(source_labels))
        ce = F.cross_entropy(c1(es), ys) + F.cross_entropy(c2(es), ys)
        clf_loss = step_only(clf_opt, ce - classifier_discrepancy(c1(et.detach()), c2(et.detach())))
    md = moment_distance([e.detach() for e in source_embeds] + [et], k=k, target=-1)
    disc = classifier_discrepancy(c1(et), c2(et))
    step_only(target_opt, moment_weight * md + discrepancy_weight * disc)
    return {"moment": float(md.detach()), "discrepancy": float(disc.detach()), "clf_loss": clf_loss}
