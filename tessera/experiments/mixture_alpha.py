"""The clustering regularizer's strength in the template-mixture experiments, chosen on validation data
held out from the *training* parts (never the evaluation parts), per mixture-logit init.

Every model of an experiment trains on its tasks' training parts minus their last ``n_val`` samples
(:func:`split_val`), which validate. A sweep trains the swept row (seed 0, the full budget) once per
alpha and keeps the alpha with the best mean validation accuracy; that run *is* the row's seed-0 run
(the units are keyed by ``(row, alpha, seed)``), so the sweep costs ``len(alphas) - 1`` extra runs.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..mixture.training import TaskSplit
from .mixture_common import Model, mean

__all__ = ["ALPHAS", "sweep_models", "split_val", "clustering_loss", "regularizer_balance", "choose_alphas",
           "add_sweep_rows", "unit_key"]

ALPHAS = (0.0, 1.0, 10.0, 100.0)
"""Clustering strengths swept (squared distances normalized by P): 0 = off, up to a regularizer as large
as the cross-entropy; the sweep rows report the ratios each reaches at the end of training."""


def unit_key(row: Model, alpha: float, seed: int) -> tuple[str, str, str]:
    """The Units key of one co-training run."""
    return (row.label, f"alpha={alpha:g}" if row.mixture else "alpha=0", f"seed{seed}")


def sweep_models(rows: Sequence[Model]) -> dict[str, Model]:
    """Per init, the mixture row whose clustering strength is swept: the one with the most templates."""
    out: dict[str, Model] = {}
    for r in rows:
        if r.mixture and (r.init not in out or r.k_per_layer > out[r.init].k_per_layer):
            out[r.init] = r
    return out


def split_val(tasks: Mapping[str, TaskSplit], n_val: int) -> tuple[dict[str, TaskSplit], dict[str, tuple[Tensor, Tensor]]]:
    """``(fit, val)``: each task's training part without its last ``n_val`` samples (evaluation part
    unchanged), and those ``n_val`` samples as ``(x, y)`` validation data."""
    fit, val = {}, {}
    for t, (x, y, xe, ye) in tasks.items():
        if len(y) <= n_val:
            from ..errors import ConfigError
            raise ConfigError(f"task {t!r} has {len(y)} training samples, not more than n_val={n_val}; lower n_val")
        fit[t] = TaskSplit(x[:-n_val], y[:-n_val], xe, ye)
        val[t] = (x[-n_val:], y[-n_val:])
    return fit, val


def clustering_loss(net: Any, alpha: float) -> Callable[[str], Tensor] | None:
    """The clustering regularizer of paper 002 §3.2 for task ``t`` at strength ``alpha`` (None when off)."""
    from ..mixture import mixture_clustering

    if alpha <= 0 or not hasattr(net, "bank") or not any(p.requires_grad for p in net.mixture.values()):
        return None
    return lambda t: mixture_clustering(net, t, alpha=alpha)


def regularizer_balance(net: Any, tasks: Mapping[str, TaskSplit], n: int = 256) -> dict[str, float]:
    """Cross-entropy vs the clustering regularizer at alpha = 1, on ``n`` training images per task
    (eval mode), and the norms of their gradients on the task's mixture logits; means over tasks."""
    from ..mixture import mixture_clustering

    was = net.training
    net.eval()
    ce_v, r_v, g_ce, g_r = [], [], [], []
    try:
        for t, (x, y, _, _) in tasks.items():
            xi = net.mixture[t]
            dev = xi.device
            ce = F.cross_entropy(net(x[:n].to(dev), task=t), y[:n].to(dev))
            r = mixture_clustering(net, t, alpha=1.0)
            gc, = torch.autograd.grad(ce, xi, allow_unused=True)
            gr, = torch.autograd.grad(r, xi, allow_unused=True)
            ce_v.append(float(ce.detach()))
            r_v.append(float(r.detach()))
            g_ce.append(float(gc.norm()) if gc is not None else 0.0)
            g_r.append(float(gr.norm()) if gr is not None else 0.0)
    finally:
        net.train(was)
    return {"ce": mean(ce_v), "reg_at_alpha_1": mean(r_v), "grad_ce": mean(g_ce), "grad_reg_at_alpha_1": mean(g_r)}


def choose_alphas(rows: Sequence[Model], run_unit: Callable[[Model, float, int], Mapping[str, Any]],
                  alphas: Sequence[float] = ALPHAS, alpha: float | None = None
                  ) -> tuple[dict[str, float], dict[str, tuple[Model, list[dict[str, Any]]]]]:
    """``(alpha per init, sweeps)``: for each init's :func:`sweep_models` row, ``run_unit(row, a, 0)``
    for every ``a`` in ``alphas`` (a result with ``val_acc``, ``confidence``, ``balance``); the best
    mean validation accuracy wins (ties: the smaller alpha). ``alpha`` given: no sweep, used for all."""
    alpha_of: dict[str, float] = {}
    sweeps: dict[str, tuple[Model, list[dict[str, Any]]]] = {}
    for init, m in sweep_models(rows).items():
        if alpha is not None:
            alpha_of[init] = float(alpha)
            continue
        sweep = []
        for a in alphas:
            r = run_unit(m, a, 0)
            bal = r["balance"]
            sweep.append({"alpha": a, "accuracy": 100 * mean(r["val_acc"].values()), "confidence": r["confidence"],
                          "reg_over_ce": a * bal["reg_at_alpha_1"] / max(bal["ce"], 1e-12),
                          "grad_reg_over_grad_ce": a * bal["grad_reg_at_alpha_1"] / max(bal["grad_ce"], 1e-12)})
        best = max(sweep, key=lambda s: (round(s["accuracy"], 6), -s["alpha"]))
        for s in sweep:
            s["chosen"] = s is best
        alpha_of[init], sweeps[init] = best["alpha"], (m, sweep)
    return alpha_of, sweeps


def add_sweep_rows(rep: Any, sweeps: Mapping[str, tuple[Model, list[dict[str, Any]]]], steps: int) -> None:
    """One report row per swept alpha: mean validation accuracy (held out from training; seed 0)."""
    for m, sweep in sweeps.values():
        for s in sweep:
            rep.add_row(setting=f"alpha sweep: {m.label} (seed 0, {steps} steps; validation = held-out part of "
                                f"the training data)", method=f"alpha={s['alpha']:g}" + (" (chosen)" if s["chosen"] else ""),
                        metric="validation accuracy", values=[s["accuracy"]], paper=None,
                        confidence=round(s["confidence"], 4), reg_over_ce=round(s["reg_over_ce"], 4),
                        grad_reg_over_grad_ce=round(s["grad_reg_over_grad_ce"], 3))
