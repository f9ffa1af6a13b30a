"""Self-organization of templates across tasks (paper 002 §4.3, Fig. 2): do tasks share templates, where?

:func:`layer_sharing` measures, per layer, how much pairs of tasks share: ``same_template`` is the
fraction of pairs whose argmax template agrees, ``overlap`` the mean of ``sum_k min(w_a[k], w_b[k])``
over pairs (1: identical mixture weights, 0: disjoint templates). Pairs are grouped by a
``pair_kind(a, b)`` label (e.g. "same augmentation" / "same dataset" for Fig. 2b's digit tasks).
:func:`signature_drift` says how far training moved the mixture weights from their initialization.

>>> w = {"a": torch.tensor([[1.0, 0.0], [0.5, 0.5]]), "b": torch.tensor([[1.0, 0.0], [0.0, 1.0]])}
>>> s = layer_sharing(w)
>>> s["all"]["same_template"], s["all"]["overlap"]
([1.0, 0.0], [1.0, 0.5])
>>> signature_drift(w, {"a": w["b"], "b": w["b"]})["changed"]      # layer 1 of task a: 0 -> 1
0.25
"""
from __future__ import annotations

import itertools
from typing import Callable, Mapping

import torch
from torch import Tensor

from .plots import weights_of

__all__ = ["layer_sharing", "signature_drift", "band_means"]


def layer_sharing(weights: Mapping[str, Tensor], pair_kind: Callable[[str, str], str] | None = None
                  ) -> dict[str, dict[str, list[float]]]:
    """``{kind: {"same_template": [per layer], "overlap": [per layer], "pairs": [n]}}`` over task pairs.

    ``weights``: ``{task: (L, K) mixture weights}`` (rows sum to 1) or a MixtureNet. ``pair_kind``
    labels each unordered pair (default: every pair is ``"all"``); kinds with no pair are absent.
    """
    w = weights_of(weights)
    kind_of = pair_kind or (lambda a, b: "all")
    acc: dict[str, tuple[list[Tensor], list[Tensor]]] = {}
    for a, b in itertools.combinations(w, 2):
        same = (w[a].argmax(-1) == w[b].argmax(-1)).double()         # (L,)
        over = torch.minimum(w[a], w[b]).sum(-1).double()             # (L, K) -> (L,)
        s, o = acc.setdefault(kind_of(a, b), ([], []))
        s.append(same)
        o.append(over)
    return {k: {"same_template": [round(float(v), 4) for v in torch.stack(s).mean(0)],
                "overlap": [round(float(v), 4) for v in torch.stack(o).mean(0)],
                "pairs": [len(s)]} for k, (s, o) in acc.items()}


def signature_drift(before: Mapping[str, Tensor], after: Mapping[str, Tensor]) -> dict[str, float]:
    """How far mixture weights moved: ``changed`` (fraction of (task, layer) whose argmax template
    changed), ``confidence_before`` / ``confidence_after`` (mean largest weight), ``l1`` (mean
    ``sum_k |after - before|`` per layer, 0..2)."""
    b, a = weights_of(before), weights_of(after)
    tasks = [t for t in a if t in b]
    if not tasks:
        from ..errors import ConfigError
        raise ConfigError("signature_drift: the two weight sets share no task; pass weights of the same tasks")
    B = torch.stack([b[t] for t in tasks])                       # (T, L, K)
    A = torch.stack([a[t] for t in tasks])
    return {"changed": round(float((A.argmax(-1) != B.argmax(-1)).double().mean()), 4),
            "confidence_before": round(float(B.max(-1).values.mean()), 4),
            "confidence_after": round(float(A.max(-1).values.mean()), 4),
            "l1": round(float((A - B).abs().sum(-1).mean()), 4)}


def band_means(per_layer: list[float], bands: int = 2) -> list[float]:
    """Means of ``per_layer`` over ``bands`` contiguous groups of layers (early ... late).

    >>> band_means([1.0, 1.0, 0.0, 0.5])
    [1.0, 0.25]
    """
    n = len(per_layer)
    edges = [round(i * n / bands) for i in range(bands + 1)]
    return [round(sum(per_layer[lo:hi]) / max(1, hi - lo), 4) for lo, hi in zip(edges, edges[1:])]
