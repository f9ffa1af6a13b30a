"""``tessera reproduce muir-context | muir-methods | muir-generic``: paper 003 Tables 7, 6 and 4 on the
cross-modal tasks of ``muir-crossmodal`` (L: LeNet / Fashion-MNIST, S: LSTM LM / PTB, D: DeepBind / ENCODE
GATA3), at its budgets and with its unit store, so the units the tables share (the single-task
baselines and MUiR with c = 4 across L+S+D) are trained once for all of them.

* **muir-context** (Table 7): MUiR across L+S+D with context size c in {0, 1, 2, 4, 8}; c = 0 shares
  blocks exactly (the blocks are the hypermodules), the alignment search still runs.
* **muir-methods** (Table 6): single-task learning, classical deep MTL (hierarchically aligned blocks
  shared exactly), parallel adapters (those + a learned diagonal per location), MUiR started from the
  hierarchical alignment, MUiR -- all :func:`tessera.hyper.share` methods on the engine.
* **muir-generic** (Table 4): after the joint MUiR runs, generic (used by more than c locations) vs
  specific hypermodules, contexts and generated blocks, four statistics, two-tailed Mann-Whitney p.

Each claim of the paper is checked on paired per-seed differences (same seed = same adapter init and data
order): *holds* when the mean difference favours the claim by more than 2 standard errors, *does not
hold* when it favours the opposite by more than 2 standard errors, *within noise* otherwise.

``--budget paper`` follows the paper's schedule (n_init 2000, 1000 generations of 1000 steps, LSTM 256,
DeepBind-256; §4.2.3 capped its runs at 200 epochs); ``default`` is muir-crossmodal's 1500 steps.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import torch

from ..hyper.analysis import STATISTICS, compare_generic_specific
from ..results import Report, format_table, mean_stderr
from ..threads import intra_op_threads
from . import RunOptions
from .muir_crossmodal import budget_of, load, run_unit, unit_store
from .muir_units import Spec

__all__ = ["run_context", "run_methods", "run_generic", "verdict", "PAPER_CONTEXT", "PAPER_METHODS", "PAPER_GENERIC"]

CONTEXTS = (0, 1, 2, 4, 8)
PAPER_CONTEXT = {0: (21.89, 144.52, 0.1508), 1: (21.80, 140.94, 0.1477), 2: (20.40, 133.94, 0.1504),
                 4: (20.51, 130.70, 0.1464), 8: (20.62, 130.80, 0.1468)}
"""Table 7 of paper 003: c -> (LeNet error %, LSTM perplexity, DeepBind MSE)."""
METHODS = {"stl": ("baseline", Spec("plain")), "classical": ("classical", Spec("classical", context=0)),
           "adapters": ("adapters", Spec("adapters", context=0)),
           "muir-hierarchical": ("muir-hierarchical", Spec("muir", alignment="hierarchical")),
           "muir": ("muir-across", Spec())}
"""Table 6 method -> (unit row, how it trains)."""
PAPER_METHODS = {"stl": (21.46, 135.03, 0.1543), "classical": (21.09, 145.88, 0.1519),
                 "adapters": (21.05, 132.02, 0.1600), "muir-hierarchical": (20.72, 128.94, 0.1465),
                 "muir": (20.51, 130.70, 0.1464)}
"""Table 6 of paper 003 (LeNet / Stacked LSTM / DeepBind)."""
PAPER_GENERIC = {"modules": (7e-4, 3e-1, 8e-4, 6e-3), "contexts": (1e-43, 1e-143, 4e-138, 5e-126),
                 "blocks": (3e-153, 5e-2, 5e-153, 4e-146)}
"""Table 4 of paper 003 (a W+S+D run): p-values for Stdev, Mean, Norm, Max of hypermodules, contexts and
linear maps; S.4: 666 generic / 4344 specific modules, 4363 generic / 8401 specific pseudo-tasks."""
_PAPER_TASK = {"L": "LeNet, CIFAR-10 error %", "S": "LSTM, WikiText-2 perplexity", "D": "DeepBind-256, CRISPR MSE"}


def verdict(a: Sequence[float], b: Sequence[float], lower_is_better: bool) -> dict[str, Any]:
    """Is A better than B? Paired per-seed differences (+ = A better): mean, std error and the verdict
    (none from a single seed)."""
    sign = -1.0 if lower_is_better else 1.0
    d = [sign * (x - y) for x, y in zip(a, b)]
    m, se = mean_stderr(d)
    if len(d) < 2:      # one seed has no std error: no verdict
        return {"diff_mean": m, "diff_stderr": float("nan"), "diffs": d, "verdict": "untested (one seed)"}
    word = "holds" if m > 2 * se and m > 0 else "does not hold" if m < -2 * se and m < 0 else "within noise"
    return {"diff_mean": m, "diff_stderr": se, "diffs": d, "verdict": word}


def _setup(opts: RunOptions, tasks: Sequence[Any] | None, budget: Any) -> tuple[list[Any], Any, str, Any, int]:
    name, named = budget_of(opts)
    budget = budget or named
    seeds = opts.seeds if opts.seeds is not None else 3
    tasks = list(tasks) if tasks is not None else load(opts, budget)
    return tasks, unit_store(opts, tasks, name, budget), name, budget, seeds


def _metric_rows(report: Report, tasks: Sequence[Any], values: dict[str, dict[str, list[float]]],
                 paper: dict[Any, tuple[float, float, float]], label: Any) -> None:
    for i, t in enumerate(tasks):
        for key, per_task in values.items():
            report.add_row(setting=f"{t.short}: {t.describe()['data'].split(' (')[0]}", method=str(key), metric=t.metric,
                           values=per_task[t.short], lower_is_better=t.lower_is_better,
                           paper=paper[label(key)][i], paper_setting=_PAPER_TASK[t.short])


def _claims(report: Report, tasks: Sequence[Any], values: dict[str, dict[str, list[float]]],
            claims: Sequence[tuple[str, str, str]]) -> None:
    out = []
    for a, b, text in claims:
        for t in tasks:
            v = verdict(values[a][t.short], values[b][t.short], t.lower_is_better)
            out.append({"claim": text, "task": t.short, "a": a, "b": b, **v})
    report.config["claims"] = out
    print(format_table([{**c, "diff_mean": round(c["diff_mean"], 4), "diff_stderr": round(c["diff_stderr"], 4)}
                        for c in out], ["claim", "task", "diff_mean", "diff_stderr", "verdict"]))


def run_context(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Any = None) -> dict[str, Any]:
    """Table 7: MUiR across L+S+D with c in {0, 1, 2, 4, 8}."""
    report = Report("muir-context", device="cpu")
    with intra_op_threads(1):
        tasks, units, name, budget, seeds = _setup(opts, tasks, budget)
        values: dict[str, dict[str, list[float]]] = {f"c={c}": {t.short: [] for t in tasks} for c in CONTEXTS}
        for seed in range(seeds):
            for c in CONTEXTS:
                row = "muir-across" if c == 4 else f"muir-c{c}"
                res = run_unit(units, tasks, row, Spec("muir", context=c), name, budget, seed, opts.device)
                for s, v in res["metrics"].items():
                    values[f"c={c}"][s].append(v)
    report.config.update(budget=name, seeds=seeds, contexts=list(CONTEXTS), steps=budget.steps,
                         generations=budget.generations, tasks={t.short: t.describe() for t in tasks})
    _metric_rows(report, tasks, values, PAPER_CONTEXT, lambda k: int(k.split("=")[1]))
    _claims(report, tasks, values, [("c=4", "c=0", "contexts help: c = 4 beats c = 0 (blocks shared exactly)"),
                                    ("c=1", "c=0", "c = 1 beats c = 0"),
                                    ("c=8", "c=4", "robust to c: c = 8 vs c = 4 (paper: within 0.1-0.6%)")])
    return report.write(opts.json)


def run_methods(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Any = None) -> dict[str, Any]:
    """Table 6: STL, classical DMTL, parallel adapters, MUiR + hierarchical init, MUiR."""
    report = Report("muir-methods", device="cpu")
    with intra_op_threads(1):
        tasks, units, name, budget, seeds = _setup(opts, tasks, budget)
        values: dict[str, dict[str, list[float]]] = {m: {t.short: [] for t in tasks} for m in METHODS}
        params: dict[str, int] = {}
        for seed in range(seeds):
            for method, (row, spec) in METHODS.items():
                groups = [[t] for t in tasks] if method == "stl" else [list(tasks)]
                for group in groups:
                    res = run_unit(units, group, row, spec, name, budget, seed, opts.device)
                    for s, v in res["metrics"].items():
                        values[method][s].append(v)
                    if seed == 0:
                        params[method] = params.get(method, 0) + res.get("total_params", res["plain_params"])
    report.config.update(budget=name, seeds=seeds, steps=budget.steps, tasks={t.short: t.describe() for t in tasks},
                         trainable_params_seed0=params)
    _metric_rows(report, tasks, values, PAPER_METHODS, lambda k: k)
    _claims(report, tasks, values, [
        ("muir", "classical", "MUiR beats classical deep MTL"), ("muir", "adapters", "MUiR beats parallel adapters"),
        ("muir-hierarchical", "classical", "MUiR + hierarchical init beats classical deep MTL"),
        ("muir-hierarchical", "adapters", "MUiR + hierarchical init beats parallel adapters"),
        ("muir", "muir-hierarchical", "MUiR vs MUiR + hierarchical init (paper: either may win)"),
        ("classical", "stl", "classical deep MTL beats STL (paper: on L and D, not S)"),
        ("adapters", "stl", "parallel adapters beat STL (paper: on L and S, not D)"),
        ("muir", "stl", "MUiR beats STL")])
    return report.write(opts.json)


def run_generic(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Any = None) -> dict[str, Any]:
    """Table 4: generic vs specific hypermodules / contexts / generated blocks of the joint MUiR runs."""
    report = Report("muir-generic", device="cpu")
    t0 = time.perf_counter()
    with intra_op_threads(1):
        tasks, units, name, budget, seeds = _setup(opts, tasks, budget)
        runs = [run_unit(units, tasks, "muir-across", Spec(), name, budget, seed, opts.device) for seed in range(seeds)]
    for rule, min_models in (("used by more than c locations (the paper)", None), ("used by >= 2 models", 2)):
        per_seed = [compare_generic_specific({k: torch.tensor(v) for k, v in r["tensor_stats"].items()},
                                             torch.tensor(r["psi0"]), torch.tensor(r["layout"])[:, 0],
                                             num_modules=r["num_modules"], context=Spec().context,
                                             min_models=min_models) for r in runs]
        pooled = _pooled(runs, min_models)
        for group in ("modules", "contexts", "blocks"):
            for j, stat in enumerate(STATISTICS):
                cell = pooled[group][stat]
                smaller = (cell["generic_median"] is not None and cell["specific_median"] is not None
                           and cell["generic_median"] < cell["specific_median"])
                report.add_row(setting=f"{group}: {rule}", method=stat, metric="mann_whitney_p", mean=cell["p"],
                               stderr=None, n=len(runs), lower_is_better=True, paper=PAPER_GENERIC[group][j],
                               per_seed_p=[s[group][stat]["p"] for s in per_seed],
                               generic_median=cell["generic_median"], specific_median=cell["specific_median"],
                               generic_smaller=smaller, n_generic=pooled[group]["n_generic"],
                               n_specific=pooled[group]["n_specific"])
    report.config.update(budget=name, seeds=seeds, steps=budget.steps, pooled="tensors of all seeds' runs pooled",
                         paper_counts={"generic_modules": 666, "specific_modules": 4344,
                                       "generic_pseudo_tasks": 4363, "specific_pseudo_tasks": 8401},
                         seconds=round(time.perf_counter() - t0, 1))
    return report.write(opts.json)


def _pooled(runs: Sequence[dict[str, Any]], min_models: int | None) -> dict[str, Any]:
    """Table 4 over every seed's tensors at once (hypermodule ids offset per run so they stay distinct)."""
    stats = {k: torch.cat([torch.tensor(r["tensor_stats"][k]) for r in runs]) for k in ("modules", "contexts", "blocks")}
    offs = [sum(r["num_modules"] for r in runs[:i]) for i in range(len(runs))]
    psi0 = torch.cat([torch.tensor(r["psi0"]) + o for r, o in zip(runs, offs)])
    model = torch.cat([torch.tensor(r["layout"])[:, 0] for r in runs])
    return compare_generic_specific(stats, psi0, model, num_modules=sum(r["num_modules"] for r in runs),
                                    context=Spec().context, min_models=min_models)
