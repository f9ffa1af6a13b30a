"""``tessera reproduce muir-compress``: paper 003 Table 5 analog, MUiR's parameter reduction on an LSTM LM.

The paper dropped MUiR into AWD-LSTM on WikiText-2 (jointly with LeNet, since L+S was best there) and
reports LSTM parameters and test perplexity: STL at 19.8M 69.94, MUiR at 8.8M 71.01, STL shrunk to 8.8M
(smaller hidden size) 73.64. Here (WikiText-2's train split is not offline): the PTB LSTM LM of
``muir-crossmodal`` (embedding E = 128, 2 LSTM layers, tied decoder, dropout 0.2) with LeNet on
Fashion-MNIST, per seed:

1. **STL full**: the LM alone, hidden 128;
2. **MUiR (L+S)**: LeNet and the LM share one hypermodule bank (16x16 blocks, c = 4, lambda = 1); its *LSTM
   parameters* are what generates the LSTM weights after compaction (§3.2): the contexts and plain blocks
   of the LSTM's locations and every hypermodule they use, counted whole even when LeNet shares it
   (:func:`tessera.hyper.parameter_count` with ``where``), plus the LSTM biases;
3. **STL shrunk**: the LM alone in the AWD-LSTM layout E -> h -> E with the hidden size h chosen so its LSTM
   parameters match MUiR's of that seed (the tied embedding keeps its size E, as AWD-LSTM's).

Claims checked on paired per-seed differences (see :func:`.muir_tables.verdict`): MUiR beats STL at the
same LSTM parameter count; MUiR approaches STL at the full count.

Budgets: ``default`` 4500 steps per unit (MUiR: 150 steps with Eq. 5, then 58 generations of 75 steps) so
the search has time to share; ``paper``: AWD-LSTM's sizes (E = 400, three layers, hidden 1150: 20.2M LSTM
weights) with the §4.2 schedule (n_init 2000, 1000 generations of 1000 steps) for a GPU.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..hyper import parameter_count
from ..results import Report
from ..threads import intra_op_threads
from . import RunOptions
from .muir_crossmodal import Budget as CrossBudget
from .muir_crossmodal import unit_store
from .muir_tables import verdict
from .muir_units import Spec, train_unit

__all__ = ["run", "Budget", "BUDGETS", "lstm_params", "hidden_for", "PAPER"]

PAPER = {"stl-full": (19.8e6, 69.94), "muir": (8.8e6, 71.01), "stl-shrunk": (8.8e6, 73.64)}
"""Table 5 of paper 003: method -> (LSTM parameters, WikiText-2 test perplexity), AWD-LSTM."""


@dataclass(frozen=True)
class Budget(CrossBudget):
    """muir-crossmodal's budget (steps, MUiR schedule, sizes) plus the LM's embedding size and depth."""

    embed: int = 128
    layers: int = 2


BUDGETS = {
    "quick": Budget(steps=40, n_init=10, n_iter=10, eval_tokens=7_000, eval_images=2_000, train_fraction=0.25),
    "default": Budget(steps=4500, n_init=150, n_iter=75, eval_tokens=None, eval_images=None),
    "paper": Budget(steps=1_002_000, n_init=2000, n_iter=1000, eval_tokens=None, eval_images=None, hidden=1150,
                    embed=400, layers=3),
}


def lstm_params(sizes: Sequence[int]) -> int:
    """Weights + biases of stacked single-layer LSTMs ``sizes[0] -> sizes[1] -> ...`` (4 gates each).

    >>> lstm_params([128, 128, 128])            # the crossmodal LM: 2 x (4*128*(128+128) + 2*4*128)
    264192
    """
    return sum(4 * b * (a + b) + 8 * b for a, b in zip(sizes, sizes[1:]))


def _sizes(embed: int, hidden: int, layers: int) -> list[int]:
    return [embed] + [hidden] * (layers - 1) + [embed]


def hidden_for(params: int, embed: int, layers: int, largest: int) -> int:
    """The hidden size h <= ``largest`` whose E -> h -> E LSTM has the parameter count closest to ``params``.

    >>> hidden_for(lstm_params([128, 64, 128]), 128, 2, 128)
    64
    """
    return min(range(1, largest + 1), key=lambda h: abs(lstm_params(_sizes(embed, h, layers)) - params))


def _muir_lstm_params(res: dict[str, Any], model: int, sizes: Sequence[int]) -> int:
    layout = torch.tensor(res["layout"])
    where = layout[:, 0] == model
    gen = parameter_count(torch.tensor(res["psi0"]), res["num_modules"], res["spec"]["context"], (16, 16),
                          compact=True, where=where)
    return gen + sum(8 * b for b in sizes[1:])                        # + the LSTM biases (not generated)


def run(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """Table 5 analog (``opts.seeds`` seeds, default 3)."""
    from ..data import resolve_root
    from .muir_tasks import load_tasks
    name = opts.budget if opts.budget in BUDGETS else "default"
    budget = budget or BUDGETS[name]
    seeds = opts.seeds if opts.seeds is not None else 3
    report = Report("muir-compress", device="cpu")
    with intra_op_threads(1):
        if tasks is None:
            tasks = load_tasks(resolve_root(opts.data_root), train_fraction=budget.train_fraction,
                               eval_images=budget.eval_images, eval_tokens=budget.eval_tokens, hidden=budget.hidden,
                               embed=budget.embed)[:2]
        vis, lang = tasks
        units = unit_store(opts, tasks, f"compress-{name}", budget)   # type: ignore[arg-type]
        full_sizes = _sizes(budget.embed, budget.hidden, budget.layers)
        rows: dict[str, dict[str, list[float]]] = {m: {"ppl": [], "params": []} for m in PAPER}
        hidden: list[int] = []
        for seed in range(seeds):
            def unit(row: str, group: Sequence[Any], spec: Spec, seed: int = seed) -> dict[str, Any]:
                key = (f"compress-{name}", f"seed{seed}", row, "+".join(t.short for t in group))

                def fn(work: Any) -> dict[str, Any]:
                    return train_unit(group, spec, budget.config(seed), steps=budget.steps, seed=seed, workdir=work,
                                      device=opts.device, log=units.log, label=" ".join(key[1:]))
                return units.run(key, fn)
            full = unit("stl-full", [lang], Spec("plain"))
            muir = unit("muir", [vis, lang], Spec())
            p_muir = _muir_lstm_params(muir, 1, full_sizes)
            h = hidden_for(p_muir, budget.embed, budget.layers, budget.hidden)
            shrunk = full if h == budget.hidden else unit(f"stl-shrunk-h{h}", [_with_hidden(lang, h)], Spec("plain"))
            hidden.append(h)
            for m, res, p in (("stl-full", full, lstm_params(full_sizes)), ("muir", muir, p_muir),
                              ("stl-shrunk", shrunk, lstm_params(_sizes(budget.embed, h, budget.layers)))):
                rows[m]["ppl"].append(res["metrics"]["S"])
                rows[m]["params"].append(p)
    for m, d in rows.items():
        report.add_row(setting="S: PTB LSTM LM (with L for MUiR)", method=m, metric="test_perplexity", values=d["ppl"],
                       lower_is_better=True, paper=PAPER[m][1], lstm_params=d["params"], paper_lstm_params=PAPER[m][0],
                       paper_setting="AWD-LSTM on WikiText-2 (MUiR with LeNet)")
    report.config.update(budget=name, seeds=seeds, **dataclasses.asdict(budget), generations=budget.generations,
                         shrunk_hidden=hidden, full_lstm_params=lstm_params(full_sizes),
                         tasks={t.short: t.describe() for t in tasks},
                         claims=[{"claim": "MUiR beats STL with the same LSTM parameter count", "task": "S",
                                  **verdict(rows["muir"]["ppl"], rows["stl-shrunk"]["ppl"], True)},
                                 {"claim": "MUiR approaches STL at the full count (paper: 71.01 vs 69.94)",
                                  "task": "S", **verdict(rows["muir"]["ppl"], rows["stl-full"]["ppl"], True)}])
    return report.write(opts.json)


def _with_hidden(lang: Any, hidden: int) -> Any:
    """The same language task with the AWD-LSTM layout E -> ``hidden`` -> E."""
    t = copy.copy(lang)
    t.hidden, t.embed = hidden, lang.embed or lang.hidden
    return t
