"""The clustering regularizer's strength in the template-mixture experiments, chosen by a sweep on data
held out from the *training* parts (never the evaluation parts), per mixture-logit init.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..mixture.training import TaskSplit
from .mixture_common import Model, mean

__all__ = ["ALPHAS", "sweep_models", "holdout", "clustering_loss", "regularizer_balance", "choose_alpha",
           "add_sweep_rows", "alphas_by_init"]

ALPHAS = (0.0, 0.1, 1.0, 10.0)
"""Clustering strengths swept (squared distances normalized by P): 0 = off, up to a regularizer whose
gradient on the mixture logits dominates the cross-entropy's; the sweep rows report both ratios."""


def sweep_models(rows: Sequence[Model]) -> dict[str, Model]:
    """Per init, the mixture row whose clustering strength is swept: the one with the most templates."""
    out: dict[str, Model] = {}
    for r in rows:
        if r.mixture and (r.init not in out or r.k_per_layer > out[r.init].k_per_layer):
            out[r.init] = r
    return out


def holdout(tasks: Mapping[str, TaskSplit], n_val: int) -> dict[str, TaskSplit]:
    """Each task's training part split again: the first ``len - n_val`` train, the last ``n_val``
    become its evaluation data (held out from training; the real evaluation part is not used)."""
    out = {}
    for t, (x, y, _, _) in tasks.items():
        if len(y) <= n_val:
            from ..errors import ConfigError
            raise ConfigError(f"task {t!r} has {len(y)} training samples, not more than n_val={n_val}; lower n_val")
        out[t] = TaskSplit(x[:-n_val], y[:-n_val], x[-n_val:], y[-n_val:])
    return out


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


def choose_alpha(units: Any, tasks: Mapping[str, TaskSplit], model: Model, *, heads: Mapping[str, int], depth: int,
                 arch: Mapping[str, Any],
                 steps: int, batch: int, n_val: int, device: str, ckpt: int, alphas: Sequence[float] = ALPHAS,
                 seed: int = 0) -> tuple[float, list[dict[str, Any]]]:
    """Sweep the clustering strength of ``model`` on data held out from training; pick the best.

    Every alpha trains ``model`` (seed ``seed``, ``steps`` steps) on :func:`holdout` splits and is
    scored by the mean accuracy over tasks on the held-out part of the *training* data; the largest
    wins (ties: the smaller alpha). Returns ``(alpha, sweep)`` with one entry per alpha (accuracy,
    mean largest mixture weight, regularizer / cross-entropy and gradient ratios at the end).
    """
    from ..mixture import train_tasks

    val = holdout(tasks, n_val)
    sweep = []
    for a in alphas:
        def one(work: Any, a: float = a) -> dict[str, Any]:
            net = model.build(heads, depth, seed, arch)
            res = train_tasks(net, val, steps=steps, batch=batch, seed=seed, device=device,
                              regularizer=clustering_loss(net, a), out_dir=work / "train", checkpoint_every=ckpt)
            w = torch.stack(list(net.mixture_weights().values()))          # (T, L, K)
            return {"val_acc": res["acc"], "confidence": float(w.max(-1).values.mean()),
                    "balance": regularizer_balance(net, val)}
        r = units.run(("alpha-sweep", model.label, f"alpha={a:g}"), one)
        bal = r["balance"]
        sweep.append({"alpha": a, "accuracy": 100 * mean(r["val_acc"].values()), "confidence": r["confidence"],
                      "reg_over_ce": a * bal["reg_at_alpha_1"] / max(bal["ce"], 1e-12),
                      "grad_reg_over_grad_ce": a * bal["grad_reg_at_alpha_1"] / max(bal["grad_ce"], 1e-12)})
    best = max(sweep, key=lambda s: (round(s["accuracy"], 6), -s["alpha"]))
    for s in sweep:
        s["chosen"] = s is best
    return best["alpha"], sweep


def add_sweep_rows(rep: Any, model: Model, sweep: list[dict[str, Any]], steps: int, seed: int = 0) -> None:
    """One report row per swept alpha (held-out-from-training accuracy; n = 1 seed)."""
    for s in sweep:
        rep.add_row(setting=f"alpha sweep: {model.label} (seed {seed}, {steps} steps, held-out part of training)",
                    method=f"alpha={s['alpha']:g}" + (" (chosen)" if s["chosen"] else ""), metric="accuracy",
                    values=[s["accuracy"]], paper=None, confidence=round(s["confidence"], 4),
                    reg_over_ce=round(s["reg_over_ce"], 4), grad_reg_over_grad_ce=round(s["grad_reg_over_grad_ce"], 3))


def alphas_by_init(opts: Any, name: str, config: Mapping[str, Any], rep: Any, rows: Sequence[Model],
                   tasks: Mapping[str, TaskSplit], heads: Mapping[str, int], b: Mapping[str, Any],
                   arch: Mapping[str, Any], alphas: Sequence[float], alpha: float | None) -> tuple[dict[str, float], Any]:
    """The clustering strength of each mixture init (swept on :func:`sweep_models`' rows with
    :func:`choose_alpha`, rows added to ``rep``; or ``alpha`` for all), and the experiment's
    :class:`~tessera.experiments.units.Units` for the main runs (its fingerprint includes them)."""
    from .units import Units

    sweep_units = Units(opts, name, dict(config, alphas=list(alphas)))
    alpha_of: dict[str, float] = {}
    for init, m in sweep_models(rows).items():
        if alpha is not None:
            alpha_of[init] = float(alpha)
            continue
        alpha_of[init], sw = choose_alpha(sweep_units, tasks, m, heads=heads, depth=b["depth"], arch=arch,
                                          steps=b["sweep_steps"], batch=b["batch"], n_val=b["n_val"],
                                          device=opts.device, ckpt=b["ckpt"], alphas=alphas)
        add_sweep_rows(rep, m, sw, b["sweep_steps"])
    rep.config["clustering_alpha"] = alpha_of
    return alpha_of, Units(opts, name, dict(config, alpha=alpha_of))
