"""``tessera reproduce muir-crossmodal``: Table 3 and Fig. 3 of paper 003, scaled to a 2-core CPU.

Three (architecture, task) pairs from three modalities (:mod:`.muir_tasks`) share one bank of 16x16
hypermodules (c = 4, lambda = 1, p = 0.5, lr_s = 0.1, Adam lr 1e-3; S.4):

* **L** - LeNet on Fashion-MNIST, test error %. The paper's LeNet ran on CIFAR-10 (21% error); MNIST
  LeNets sit at ~1% error, where every row ties within noise, so the harder Fashion-MNIST (~10%) is used.
  Batch 128 (S.5).
* **S** - 2-layer LSTM LM (tied embedding/decoder, dropout 0.2) on Penn Treebank, test perplexity;
  hidden 128 instead of 256, batch 20, truncated BPTT of 35 tokens. The paper used WikiText-2 (its train
  split is not available offline).
* **D** - DeepBind (1-D CNN, 24-wide motif filters, C = 32 channels instead of 256) on one ENCODE ChIP-seq
  TF in DeepBind format, test AUC. Training files hold only bound sequences; negatives are their
  dinucleotide shuffles (Altschul-Erickson; exactly how the test file's unbound half was made, which we
  verified: each of its 500 negatives has the dinucleotide counts of one of its positives). Batch 256.
  The paper's CRISPR binding data are not public; the Doench CRISPR sets (5k 30-mers) are too small and
  too noisy for MSE differences between rows to mean anything.

Rows (each task trained the same number of steps in every row, same adapter init): ``baseline`` (plain
models), ``muir-within`` (each model reparameterized alone, its own search = the paper's *Intratask*),
``muir-across`` (all three in one bank, one search = *L+S+D*; a step is one batch of every task, losses
summed, one Adam step, as the paper's code). The first and last layer of every model are unshared
adapters. Every unit is one :class:`tessera.train.Trainer` run (:func:`.muir_units.train_unit`); the
alignment search is :class:`tessera.hyper.MuirSearch` (Alg. 2) with ``n_final = 0`` and no best-state
restore, as the paper's cross-modal config (``save_best: False``).

Budget (``default``): 1500 steps per task in every row; MUiR rows: 150 steps with Eq. 5, then 18
generations of 75 steps (the paper: 2000 + 1000 x 1000 steps, i.e. ~670x more, on full-size models and a
GPU: ``--budget paper``). Shorter generations than 75 steps make the soft-merge decisions coin flips
(half the challenged locations switch every generation and the DNA model loses ~0.1 AUC); at 75 the L
and D incumbents win ~95% of the contests and the LSTM's many young blocks keep sharing, as in Fig. 3a.

Every (budget, seed, row, tasks) unit is stored by :class:`.units.Units` in ``muir-units/`` beside
``opts.out`` as soon as it finishes (:func:`unit_store`); a killed unit resumes from its last engine
checkpoint (every 250 steps), and a rerun reuses finished units.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..hyper import MuirConfig
from ..results import Report
from ..threads import intra_op_threads
from . import RunOptions
from .muir_tasks import load_tasks
from .muir_units import Spec, train_unit
from .units import Units

__all__ = ["run", "run_units", "Budget", "BUDGETS", "layer_sharing", "PAPER", "ROWS", "unit_store"]

ROWS = ("baseline", "muir-within", "muir-across")

PAPER = {"L": {"baseline": 21.08, "muir-within": 20.67, "muir-across": 20.23},
         "S": {"baseline": 134.41, "muir-within": 132.06, "muir-across": 130.77},
         "D": {"baseline": 0.1540, "muir-within": 0.1466, "muir-across": 0.1464}}
"""Table 3 of paper 003 (LeNet / Stacked LSTM / DeepBind-256 columns Baseline, Intratask, L+S+D)."""
PAPER_SETTING = {"L": "LeNet on CIFAR-10, test error %",
                 "S": "2x256 LSTM on WikiText-2, test perplexity",
                 "D": "DeepBind-256 on CRISPR binding, test MSE"}


@dataclass(frozen=True)
class Budget:
    """Training length (the same for every row), the search schedule of the MUiR rows and model sizes."""

    steps: int                 # training steps per task in every row
    n_init: int                # Eq. 5 steps before the search
    n_iter: int                # steps per generation
    eval_tokens: int | None    # LM test tokens evaluated (None: the whole test split)
    eval_images: int | None    # vision test images evaluated (None: all)
    train_fraction: float = 1.0  # of each training set that is used (quick runs)
    hidden: int = 128          # LSTM size (the paper: 256)
    channels: int = 32         # DeepBind channels (the paper: 256)

    @property
    def generations(self) -> int:
        return (self.steps - self.n_init) // self.n_iter

    def config(self, seed: int) -> MuirConfig:
        return MuirConfig(block=(16, 16), context=4, lam=1, p=0.5, eps=1e-4, lr_scores=0.1, n_init=self.n_init,
                          n_iter=self.n_iter, n_generations=self.generations, n_final=0, seed=seed).validate()


BUDGETS = {
    # about 1.5 min on the loaded 2-core CPU (mostly data loading and evaluation)
    "quick": Budget(steps=40, n_init=10, n_iter=10, eval_tokens=7_000, eval_images=2_000, train_fraction=0.25),
    # one torch thread; CPU time per step (plain; MUiR +2-5%): L 14 ms + S 135 ms + D 40 ms = 0.19 s, so
    # 3 rows x 1500 steps = 14 min of CPU time (~15 min on a quiet machine, ~40 min at load average 8)
    "default": Budget(steps=1500, n_init=150, n_iter=75, eval_tokens=None, eval_images=None),
    # the paper's protocol (S.4): n_init 2000, 1000 generations of 1000 steps, LSTM 256, DeepBind-256 (a GPU)
    "paper": Budget(steps=1_002_000, n_init=2000, n_iter=1000, eval_tokens=None, eval_images=None, hidden=256,
                    channels=256),
}


def budget_of(opts: RunOptions) -> tuple[str, Budget]:
    name = opts.budget if opts.budget in BUDGETS else "default"
    return name, BUDGETS[name]


def unit_store(opts: RunOptions, tasks: Sequence[Any], budget_name: str, budget: Budget) -> Units:
    """The per-unit store of every MUiR command, ``muir-units/`` beside the command's ``--out`` folder
    (``runs/reproduce/muir-units`` by default): tables that train the same units at the same budget
    (the baselines and MUiR with c = 4 appear in Tables 3, 6 and 7) train them once."""
    fingerprint = {"budget": budget_name, **dataclasses.asdict(budget), "tasks": [t.describe() for t in tasks]}
    shared = dataclasses.replace(opts, out=Path(opts.out).parent)
    return Units(shared, "muir-units", fingerprint, log=lambda m: print(f"[muir] {m}", flush=True))


def run_unit(units: Units, tasks: Sequence[Any], row: str, spec: Spec, budget_name: str, budget: Budget,
             seed: int, device: str) -> dict[str, Any]:
    """Train (or reuse) one unit: the tasks ``tasks`` in row ``row`` with ``spec``."""
    shorts = "+".join(t.short for t in tasks)
    label = f"seed {seed} {row} {shorts}"

    def fn(work: Path) -> dict[str, Any]:
        units.log(f"{label}: training {budget.steps} steps")
        res = train_unit(tasks, spec, budget.config(seed), steps=budget.steps, seed=seed, workdir=work,
                         device=device, log=units.log, label=label)
        units.log(f"{label}: {res['metrics']} ({res['train_seconds']:.0f}s, {1e3 * res['step_seconds']:.0f} ms/step)")
        return {"row": row, **res}
    return units.run((budget_name, f"seed{seed}", row, shorts), fn)


def run_units(opts: RunOptions, tasks: Sequence[Any], budget_name: str, budget: Budget, seeds: int
              ) -> list[dict[str, Any]]:
    """Every (seed, row, task) unit of Table 3."""
    units = unit_store(opts, tasks, budget_name, budget)
    results = []
    for seed in range(seeds):
        plan = ([("baseline", Spec("plain"), [t]) for t in tasks] + [("muir-within", Spec(), [t]) for t in tasks]
                + [("muir-across", Spec(), list(tasks))])
        for row, spec, group in plan:
            results.append(run_unit(units, group, row, spec, budget_name, budget, seed, opts.device))
    return results


# --------------------------------------------------------------------------------------------------
# sharing analysis (Fig. 3)
# --------------------------------------------------------------------------------------------------
def layer_sharing(psi0: Tensor, layer: Tensor, num_modules: int) -> Tensor:
    """``(Y, Y)``: how many times more likely two pseudo-tasks of layers (a, b) use the same hypermodule
    than two random distinct locations (Fig. 3b); chance = sum_k u_k (u_k - 1) / (L (L - 1)).

    >>> r = layer_sharing(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 1]), 3)
    >>> [round(v, 2) for v in r.flatten().tolist()]
    [nan, 2.0, 2.0, 0.0]
    """
    Y = int(layer.max()) + 1
    U = torch.zeros(Y, num_modules, dtype=torch.float64)
    U.index_put_((layer.cpu(), psi0.cpu()), torch.ones(len(psi0), dtype=torch.float64), accumulate=True)  # (Y, K)
    n = U.sum(1)                                                                   # (Y,) locations per layer
    same = U @ U.T - torch.diag(n)                                                 # ordered pairs l != l'
    pairs = n[:, None] * n[None, :] - torch.diag(n)
    u = U.sum(0)
    L = float(n.sum())
    chance = float((u * (u - 1)).sum()) / (L * (L - 1))
    return (same / pairs) / chance if chance > 0 else torch.full((Y, Y), float("nan"), dtype=torch.float64)


# --------------------------------------------------------------------------------------------------
# report and plots
# --------------------------------------------------------------------------------------------------
def build_report(report: Report, tasks: Sequence[Any], results: Sequence[dict[str, Any]]) -> None:
    """Table 3 rows (per task and row) and the shared-module accounting rows."""
    by = {(r["row"], s): [] for r in results for s in r["tasks"]}
    for r in results:
        for s in r["tasks"]:
            by[(r["row"], s)].append(r["metrics"][s])
    for t in tasks:
        base = by.get(("baseline", t.short))
        for row in ROWS:
            vals = by.get((row, t.short))
            if not vals:
                continue
            mean = float(np.mean(vals))
            paper = PAPER[t.short][row]
            extra: dict[str, Any] = {}
            if base:   # relative change over the baseline in the metric's good direction (+ = better)
                sign = -1.0 if t.lower_is_better else 1.0
                b, pb = float(np.mean(base)), PAPER[t.short]["baseline"]
                extra["gain_vs_baseline"] = round(sign * (mean - b) / b, 4) + 0.0
                extra["paper_gain_vs_baseline"] = round((pb - paper) / pb, 4) + 0.0   # paper: all lower-is-better
            report.add_row(setting=f"{t.short}: {t.describe()['data'].split(' (')[0]}", method=row, metric=t.metric, values=vals,
                           lower_is_better=t.lower_is_better, paper=paper, paper_setting=PAPER_SETTING[t.short],
                           **extra)
    for r in results:
        if r["row"] == "baseline" or r["seed"] != 0:
            continue
        st = r["stats"]
        report.add_row(setting="+".join(r["tasks"]), method=r["row"], metric="active_hypermodules",
                       mean=float(st["active"]), stderr=0.0, n=1, lower_is_better=True, paper=None,
                       locations=len(r["psi0"]), generated_weights=st["original_params"],
                       bank_params_start=r["history"][0]["params"], model_params_plain=r["plain_params"],
                       model_params_muir=r["total_params"],
                       bank_params_end=st["params"], bank_params_compact=st["params_compact"],
                       subsets=r["history"][-1]["subsets"])


def _plots(out: Path, across: dict[str, Any], shorts: Sequence[str]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plotting is optional
        return []
    out.mkdir(parents=True, exist_ok=True)
    hist = across["history"]
    names = sorted({k for h in hist for k in h["subsets"]}, key=lambda k: (k.count("+"), k))
    steps = [h["step"] for h in hist]
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in names:
        ax.plot(steps, [h["subsets"].get(k, 0) for h in hist], label=k, marker="." if len(hist) < 40 else None)
    ax.set_yscale("symlog"), ax.set_xlabel("training step"), ax.set_ylabel("hypermodules used only by subset")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["params"] / 1e3 for h in hist], color="black", ls="--", lw=1.5, label="parameters")
    ax2.set_ylabel("MUiR parameters, thousands (dashed)")
    ax.legend(fontsize=7, ncol=2, loc="center left")
    ax.set_title("Fig. 3a analog: modules used exclusively by each subset of tasks (L+S+D)")
    paths = [str(out / "fig3a_sharing_over_time.png")]
    fig.tight_layout(), fig.savefig(paths[0], dpi=120), plt.close(fig)

    psi0, layout = torch.tensor(across["psi0"]), torch.tensor(across["layout"])
    keys = sorted({(int(a), int(b)) for a, b in layout.tolist()})
    layer = torch.tensor([keys.index((int(a), int(b))) for a, b in layout.tolist()])
    labels = [f"{shorts[a]}:{across['targets'][a][b].replace('.weight', '')}" for a, b in keys]
    ratio = layer_sharing(psi0, layer, across["num_modules"]).numpy()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(np.log2(np.clip(ratio, 1 / 8, 8)), cmap="RdBu_r", vmin=-3, vmax=3)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if np.isfinite(ratio[i, j]):
                ax.text(j, i, f"{ratio[i, j]:.1f}", ha="center", va="center", fontsize=5)
    fig.colorbar(im, label="log2 (P(same module) / chance), clipped to [-3, 3]")
    ax.set_title(f"Fig. 3b analog: layer-pair sharing (L+S+D), generation {hist[-1]['generation']}")
    paths.append(str(out / "fig3b_layer_sharing.png"))
    fig.tight_layout(), fig.savefig(paths[1], dpi=120), plt.close(fig)
    return paths


def load(opts: RunOptions, budget: Budget) -> list[Any]:
    """The real tasks at this budget's sizes."""
    from ..data import resolve_root
    return load_tasks(resolve_root(opts.data_root), train_fraction=budget.train_fraction,
                      eval_images=budget.eval_images, eval_tokens=budget.eval_tokens, hidden=budget.hidden,
                      channels=budget.channels)


def run(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Budget | None = None) -> dict[str, Any]:
    """Table 3 + Fig. 3 analog (``opts.seeds`` seeds, default 1). ``tasks`` / ``budget`` override the real
    tasks and the named budget (tests use tiny synthetic stand-ins)."""
    budget_name, named = budget_of(opts)
    budget = budget or named
    seeds = opts.seeds if opts.seeds is not None else 1
    report = Report("muir-crossmodal", device="cpu")
    with intra_op_threads(1):  # small per-op work on a shared CPU: one thread avoids OpenMP contention
        t0 = time.perf_counter()
        if tasks is None:
            tasks = load(opts, budget)
        print(f"[muir-crossmodal] data ready in {time.perf_counter() - t0:.1f}s", flush=True)
        results = run_units(opts, tasks, budget_name, budget, seeds)
    report.config.update({
        "budget": budget_name, "seeds": seeds, **dataclasses.asdict(budget), "generations": budget.generations,
        "muir": budget.config(0).to_dict(), "optimizer": "Adam lr 1e-3 (torch defaults); scores lr 0.1",
        "engine": "tessera.train.Trainer + tessera.hyper.MuirSearch", "device": opts.device,
        "tasks": {t.short: t.describe() for t in tasks}, "threads": 1,
        "paper_budget": "n_init 2000, n_iter 1000, 1000 generations (~1e6 steps/task), full-size models, GPU",
        "train_seconds": {f"{r['row']}/{'+'.join(r['tasks'])}/seed{r['seed']}": r["train_seconds"] for r in results}})
    build_report(report, tasks, results)
    across = next((r for r in results if r["row"] == "muir-across" and r["seed"] == 0), None)
    if across is not None:
        report.config["plots"] = _plots(Path(opts.out) / "muir-crossmodal", across, [t.short for t in tasks])
        report.config["sharing_history"] = [{"step": h["step"], "params": h["params"], **h["subsets"]}
                                            for h in across["history"]]
    return report.write(opts.json)
