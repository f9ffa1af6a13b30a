"""``tessera reproduce muir-architectures``: a CNN, an LSTM LM and a transformer LM share one bank.

The question a user with their own models asks of MUiR (paper 003): can architectures as different as a
convolutional net, a recurrent LM and an attention LM share generated weights on real data, and what do
they share? Three (architecture, task) pairs (:mod:`.muir_tasks`):

* **L** - LeNet on Fashion-MNIST (test error %), as in ``muir-crossmodal``;
* **S** - 2-layer LSTM LM (tied, dropout 0.2) on Penn Treebank (test perplexity), as in ``muir-crossmodal``;
* **T** - a 2-layer causal transformer LM (:class:`tessera.hyper.models.TransformerLM`: pre-norm
  ``nn.TransformerEncoderLayer`` s, ``nn.MultiheadAttention`` q / k / v / out projections, tied
  embedding / decoder, 32 memory tokens of left context) on the same PTB streams (test perplexity).

Rows: ``baseline`` (each model trained alone, plain) and ``muir-across`` (all three reparameterized
together with :func:`tessera.hyper.share`'s default targets, one bank of 16x16 hypermodules, c = 4,
lambda = 1, the alignment search as :class:`tessera.hyper.MuirSearch` on the engine; first and last layer
of each model stay unshared adapters). Same steps, seeds and schedule as ``muir-crossmodal``'s budget.
Reported: each task's metric in both rows, and how many hypermodules end up used by each subset of
the three architectures (``L+T``: shared by the CNN and the transformer only, ...).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from ..results import Report
from ..threads import intra_op_threads
from . import RunOptions
from .muir_crossmodal import Budget, budget_of, run_unit
from .muir_tasks import load_tasks
from .muir_units import Spec
from .units import Units

__all__ = ["run", "ROWS"]

ROWS = ("baseline", "muir-across")


def _units(opts: RunOptions, tasks: Sequence[Any], budget_name: str, budget: Budget) -> Units:
    fingerprint = {"budget": budget_name, **dataclasses.asdict(budget), "tasks": [t.describe() for t in tasks]}
    return Units(opts, "muir-architectures", fingerprint, log=lambda m: print(f"[muir-architectures] {m}", flush=True))


def run(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """Baseline vs one shared bank for L + S + T (``opts.seeds`` seeds, default 1); ``tasks`` / ``budget``
    override the real tasks and the named budget (tests use tiny synthetic stand-ins)."""
    budget_name, named = budget_of(opts)
    budget = budget or named
    seeds = opts.seeds if opts.seeds is not None else 1
    report = Report("muir-architectures", device="cpu")
    with intra_op_threads(1):
        t0 = time.perf_counter()
        if tasks is None:
            from ..data import resolve_root
            tasks = load_tasks(resolve_root(opts.data_root), train_fraction=budget.train_fraction,
                               eval_images=budget.eval_images, eval_tokens=budget.eval_tokens, hidden=budget.hidden,
                               parts=("L", "S", "T"))
        print(f"[muir-architectures] data ready in {time.perf_counter() - t0:.1f}s", flush=True)
        units = _units(opts, tasks, budget_name, budget)
        results = []
        for seed in range(seeds):
            results += [run_unit(units, [t], "baseline", Spec("plain"), budget_name, budget, seed, opts.device)
                        for t in tasks]
            results.append(run_unit(units, list(tasks), "muir-across", Spec(), budget_name, budget, seed, opts.device))
    for t in tasks:
        for row in ROWS:
            vals = [r["metrics"][t.short] for r in results if r["row"] == row and t.short in r["tasks"]]
            report.add_row(setting=f"{t.short}: {t.describe()['model']} on {t.describe()['data']}", method=row,
                           metric=t.metric, values=vals, lower_is_better=t.lower_is_better, paper=None)
    for r in results:
        if r["row"] != "muir-across":
            continue
        st, subsets = r["stats"], r["history"][-1]["subsets"]
        cross = sum(v for k, v in subsets.items() if "+" in k)
        report.add_row(setting="+".join(r["tasks"]) + f" seed {r['seed']}", method="muir-across",
                       metric="hypermodules_shared_across_architectures", mean=float(cross), stderr=0.0, n=1,
                       lower_is_better=False, paper=None, active=int(st["active"]), subsets=subsets,
                       locations=len(r["psi0"]), model_params_plain=r["plain_params"],
                       bank_params_end=st["params"])
    report.config.update({
        "budget": budget_name, "seeds": seeds, **dataclasses.asdict(budget), "generations": budget.generations,
        "muir": budget.config(0).to_dict(), "engine": "tessera.train.Trainer + tessera.hyper.MuirSearch",
        "tasks": {t.short: t.describe() for t in tasks}, "threads": 1, "device": opts.device,
        "mean_step_seconds": {f"{r['row']}/{'+'.join(r['tasks'])}": float(np.mean(r["step_seconds"]))
                              for r in results if r["seed"] == 0},
        "train_seconds": {f"{r['row']}/{'+'.join(r['tasks'])}/seed{r['seed']}": r["train_seconds"] for r in results}})
    return report.write(opts.json)
