"""``tessera reproduce muir-crossmodal``: Table 3 and Fig. 3 of paper 003, scaled to a 2-core CPU.

Three (architecture, task) pairs from three modalities share one bank of 16x16 hypermodules (c = 4,
lambda = 1, p = 0.5, lr_s = 0.1, Adam lr 1e-3; S.4):

* **L** - LeNet (:class:`tessera.hyper.models.LeNet`) on Fashion-MNIST, test error %. The paper's LeNet ran
  on CIFAR-10 (21% error); MNIST LeNets sit at ~1% error, where every row ties within noise, so the
  harder Fashion-MNIST (~10%) is used (``vision="mnist"`` switches). Batch 128 (S.5).
* **S** - 2-layer LSTM LM (tied embedding/decoder, dropout 0.2) on Penn Treebank, test perplexity;
  hidden 128 instead of 256, batch 20, truncated BPTT of 35 tokens. The paper used WikiText-2 (its train
  split is not available offline).
* **D** - DeepBind (1-D CNN, 24-wide motif filters, C = 32 channels instead of 256) on one ENCODE ChIP-seq
  TF in DeepBind format, test AUC. Training files hold only bound sequences; negatives are their
  dinucleotide shuffles (Altschul-Erickson; exactly how the test file's unbound half was made, which we
  verified: each of its 500 negatives has the dinucleotide counts of one of its positives). Batch 256.
  The paper's CRISPR binding data are not public; the Doench CRISPR sets (5k 30-mers) are too small and
  too noisy for MSE differences between rows to mean anything.

Rows (each task trained the same number of steps in every row, same data order and adapter init):
``baseline`` (plain models), ``muir-within`` (each model reparameterized alone, its own search =
the paper's *Intratask*), ``muir-across`` (all three in one bank, one search = *L+S+D*; a step is one
batch of every task, losses summed, one Adam step, as the paper's code). The first and last layer of
every model are unshared adapters. The alignment search is :func:`tessera.hyper.fit` (Alg. 2) with
``n_final = 0`` and no best-state restore, as the paper's cross-modal config (``save_best: False``).

Budget (``default``): 1500 steps per task in every row; MUiR rows: 150 steps with Eq. 5, then 18
generations of 75 steps (the paper: 2000 + 1000 x 1000 steps, i.e. ~670x more, on full-size models and a
GPU). Shorter generations than 75 steps make the soft-merge decisions coin flips (half the challenged
locations switch every generation and the DNA model loses ~0.1 AUC); at 75 the L and D incumbents win
~95% of the contests and the LSTM's many young blocks keep sharing, as in Fig. 3a.

Every (seed, row, task) unit writes its result JSON under ``opts.out/muir-crossmodal/<budget>/`` as soon
as it finishes, and a rerun with ``resume`` reuses the finished units.
"""
from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..hyper import MuirConfig, fit, reparameterize
from ..hyper.accounting import sharing_by_subset
from ..hyper.models import DeepBind, LeNet, LSTMLanguageModel, detach_state
from ..io import save_json
from ..results import Report
from ..threads import intra_op_threads
from . import RunOptions

__all__ = ["run", "Budget", "BUDGETS", "VisionTask", "LanguageTask", "DnaTask", "load_tasks", "synthetic_tasks",
           "dinucleotide_shuffle", "layer_sharing", "auc", "PAPER", "ROWS"]

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
    """Training length (the same for every row) and the search schedule of the MUiR rows."""

    steps: int                 # training steps per task in every row
    n_init: int                # Eq. 5 steps before the search
    n_iter: int                # steps per generation
    eval_tokens: int | None    # LM test tokens evaluated (None: the whole test split)
    eval_images: int | None    # vision test images evaluated (None: all)
    train_fraction: float = 1.0  # of each training set that is used (quick runs)

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
}
"""The paper: n_init 2000, n_iter 1000, 1000 generations (~10^6 steps per task) on a GPU."""


# --------------------------------------------------------------------------------------------------
# tasks: each builds its model, a training-batch loss closure, and its test metric
# --------------------------------------------------------------------------------------------------
class VisionTask:
    """LeNet on an image classification set; metric: test error in %."""

    short, name, metric, lower_is_better = "L", "lenet", "test_error_pct", True

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, *, dataset: str,
                 batch: int = 128):
        self.x, self.y, self.xt, self.yt = x_train, y_train, x_test, y_test
        self.dataset, self.batch = dataset, batch
        self.classes = int(max(int(y_train.max()), int(y_test.max())) + 1)

    def model(self) -> nn.Module:
        return LeNet(self.x.shape[1], self.classes, self.x.shape[-1])

    def describe(self) -> dict[str, Any]:
        return {"data": self.dataset, "model": "LeNet 16-16-128-96", "batch": self.batch, "train": len(self.y),
                "test": len(self.yt), "loss": "cross-entropy"}

    def trainer(self, model: nn.Module, seed: int) -> Callable[[], Tensor]:
        order = _Epochs(len(self.y), self.batch, seed)

        def loss() -> Tensor:
            i = order.next()
            return F.cross_entropy(model(self.x[i]), self.y[i])
        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        model.eval()
        wrong = sum(int((model(x).argmax(1) != y).sum()) for x, y in zip(self.xt.split(1000), self.yt.split(1000)))
        model.train()
        return 100.0 * wrong / len(self.yt)


class LanguageTask:
    """Word-level LSTM LM with truncated BPTT; metric: test perplexity."""

    short, name, metric, lower_is_better = "S", "lstm", "test_perplexity", True

    def __init__(self, train: Tensor, test: Tensor, vocab: int, *, dataset: str = "ptb", hidden: int = 128,
                 batch: int = 20, bptt: int = 35, eval_batch: int = 10):
        self.vocab, self.dataset, self.hidden = vocab, dataset, hidden
        self.batch, self.bptt, self.eval_batch = batch, bptt, eval_batch
        self.train = _batchify(train, batch)                                      # (T/B, B)
        self.test = _batchify(test, eval_batch)

    def model(self) -> nn.Module:
        return LSTMLanguageModel(self.vocab, self.hidden, layers=2, dropout=0.2, tie=True)

    def describe(self) -> dict[str, Any]:
        return {"data": self.dataset, "model": f"2x{self.hidden} LSTM, tied, dropout 0.2", "batch": self.batch,
                "bptt": self.bptt, "vocab": self.vocab, "train_tokens": self.train.numel(),
                "test_tokens": self.test.numel(), "loss": "cross-entropy"}

    def trainer(self, model: nn.Module, seed: int) -> Callable[[], Tensor]:
        pos, state = [0], [None]
        n = self.train.shape[0] - 1

        def loss() -> Tensor:
            if pos[0] + 2 > n:                                                    # epoch end: start over
                pos[0], state[0] = 0, None
            i, T = pos[0], min(self.bptt, n - pos[0])
            x, y = self.train[i:i + T], self.train[i + 1:i + 1 + T]               # (T, B) inputs and targets
            out, st = model(x, state[0])
            state[0], pos[0] = detach_state(st), i + T
            return F.cross_entropy(out, y.reshape(-1))
        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        model.eval()
        total, count, state = 0.0, 0, None
        for i in range(0, self.test.shape[0] - 1, self.bptt):
            T = min(self.bptt, self.test.shape[0] - 1 - i)
            out, state = model(self.test[i:i + T], state)
            total += float(F.cross_entropy(out, self.test[i + 1:i + 1 + T].reshape(-1), reduction="sum"))
            count += T * self.test.shape[1]
        model.train()
        return math.exp(total / count)


class DnaTask:
    """DeepBind on one ENCODE ChIP-seq TF (positives + dinucleotide-shuffled negatives); metric: test AUC."""

    short, name, metric, lower_is_better = "D", "deepbind", "test_auc", False

    def __init__(self, x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, *, dataset: str,
                 channels: int = 32, batch: int = 256):
        self.x, self.y, self.xt, self.yt = x_train, y_train, x_test, y_test
        self.dataset, self.channels, self.batch = dataset, channels, batch

    def model(self) -> nn.Module:
        return DeepBind(self.channels, self.channels, kernel=24)

    def describe(self) -> dict[str, Any]:
        return {"data": self.dataset, "model": f"DeepBind-{self.channels} (k=24)", "batch": self.batch,
                "train": len(self.y), "test": len(self.yt), "loss": "binary cross-entropy",
                "negatives": "one dinucleotide shuffle of each training positive"}

    def trainer(self, model: nn.Module, seed: int) -> Callable[[], Tensor]:
        order = _Epochs(len(self.y), self.batch, seed)

        def loss() -> Tensor:
            i = order.next()
            return F.binary_cross_entropy_with_logits(model(self.x[i]), self.y[i])
        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> float:
        model.eval()
        score = torch.cat([model(x) for x in self.xt.split(1000)])
        model.train()
        return auc(score, self.yt)


class _Epochs:
    """Minibatch indices: a fresh seeded permutation every epoch (the last partial batch is dropped)."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch = n, min(batch, n)
        self.g = torch.Generator().manual_seed(seed)
        self.perm, self.pos = torch.randperm(n, generator=self.g), 0

    def next(self) -> Tensor:
        if self.pos + self.batch > self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.g), 0
        self.pos += self.batch
        return self.perm[self.pos - self.batch:self.pos]


def _batchify(tokens: Tensor, batch: int) -> Tensor:
    """``(T,)`` -> ``(T // B, B)``: B contiguous streams side by side (the standard word-LM layout)."""
    n = tokens.numel() // batch
    return tokens[: n * batch].view(batch, n).t().contiguous()


def auc(score: Tensor, label: Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties).

    >>> auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0., 0., 1., 1.]))
    0.75
    """
    s, y = score.double().cpu(), label.cpu() > 0.5
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=s.dtype)
    uniq, inv = torch.unique(s, return_inverse=True)                              # average ranks of ties
    ranks = torch.zeros(len(uniq), dtype=s.dtype).index_add_(0, inv, ranks)[inv] / torch.bincount(inv)[inv]
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def dinucleotide_shuffle(seq: str, rng: random.Random) -> str:
    """A uniformly random sequence with the same dinucleotide counts, first and last letter (Altschul &
    Erickson 1985): a random Eulerian path of the sequence's transition multigraph.

    >>> s = "ACGTTGCAACGGTA"
    >>> t = dinucleotide_shuffle(s, random.Random(0))
    >>> sorted(zip(s, s[1:])) == sorted(zip(t, t[1:])) and t[0] == s[0] and t[-1] == s[-1]
    True
    """
    if len(seq) < 3:
        return seq
    edges: dict[str, list[str]] = {}
    for a, b in zip(seq, seq[1:]):
        edges.setdefault(a, []).append(b)
    last = seq[-1]
    while True:   # each vertex's last exit, uniformly; accept when they form a tree into `last`
        exit_ = {v: rng.randrange(len(e)) for v, e in edges.items() if v != last}
        ok = True
        for v in exit_:
            seen, u = set(), v
            while u != last and ok:
                if u in seen:
                    ok = False
                seen.add(u)
                u = edges[u][exit_[u]]
            if not ok:
                break
        if ok:
            break
    order: dict[str, list[str]] = {}
    for v, e in edges.items():
        e = list(e)
        tail = [e.pop(exit_[v])] if v in exit_ else []
        rng.shuffle(e)
        order[v] = e + tail
    out, pos, u = [seq[0]], {v: 0 for v in order}, seq[0]
    for _ in range(len(seq) - 1):
        v = order[u][pos[u]]
        pos[u] += 1
        out.append(v)
        u = v
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# loading the real tasks
# --------------------------------------------------------------------------------------------------
DNA_TF = "GATA3"
"""ENCODE TF used for the DNA task (its _AC training file has 15k bound sequences)."""


def load_tasks(root: Path, budget: Budget, seed: int = 0, vision: str = "fashion_mnist",
               tf: str = DNA_TF) -> list[Any]:
    """The three real tasks (L, S, D) from the data root."""
    from ..data import load_deepbind, load_images, load_text
    from ..data.genomics import one_hot_dna, read_seq_gz
    from ..data.fetch import require

    frac = budget.train_fraction
    x, y = load_images(vision, "train", root)
    xt, yt = load_images(vision, "test", root)
    keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))[: int(len(y) * frac)]
    x, y = x[keep], y[keep]
    if budget.eval_images is not None:
        xt, yt = xt[: budget.eval_images], yt[: budget.eval_images]
    vis = VisionTask(x, y, xt, yt, dataset=vision)

    tr, vocab = load_text("ptb", "train", root)
    te, _ = load_text("ptb", "test", root, vocab=vocab)
    tr = tr[: int(len(tr) * frac)]
    if budget.eval_tokens is not None:
        te = te[: budget.eval_tokens]
    lang = LanguageTask(tr, te, len(vocab))

    files = require("deepbind_encode", "train", root)
    key = next(k for k in files if k.split("_", 1)[0] == tf)
    seqs, _, _ = read_seq_gz(files[key])
    seqs = seqs[: int(len(seqs) * frac)]
    rng = random.Random(1000 + seed)
    neg = [dinucleotide_shuffle(s, rng) for s in seqs]
    L = max(len(s) for s in seqs)
    xd = one_hot_dna(seqs + neg, L)
    yd = torch.cat([torch.ones(len(seqs)), torch.zeros(len(neg))])
    xdt, ydt = load_deepbind(root, tf=tf, split="test", length=L)
    dna = DnaTask(xd, yd, xdt, ydt, dataset=f"ENCODE ChIP-seq {tf} ({key}, test _B)")
    return [vis, lang, dna]


def synthetic_tasks(seed: int = 0, *, images: int = 512, vocab: int = 10_000, tokens: int = 20_000,
                    sequences: int = 512, length: int = 101, hidden: int = 128, channels: int = 32) -> list[Any]:
    """Random stand-ins with the real tasks' shapes, batch sizes and models (benchmarks and tests)."""
    g = torch.Generator().manual_seed(seed)
    vis = VisionTask(torch.rand(images, 1, 28, 28, generator=g), torch.randint(0, 10, (images,), generator=g),
                     torch.rand(64, 1, 28, 28, generator=g), torch.arange(64) % 10, dataset="random images")
    lang = LanguageTask(torch.randint(0, vocab, (tokens,), generator=g),
                        torch.randint(0, vocab, (max(tokens // 10, 80),), generator=g), vocab,
                        dataset="random tokens", hidden=hidden)
    base = torch.randint(0, 4, (sequences + 64, length), generator=g)
    onehot = F.one_hot(base, 4).transpose(1, 2).float()                            # (N, 4, L)
    dna = DnaTask(onehot[:sequences], (torch.arange(sequences) % 2).float(), onehot[sequences:],
                  (torch.arange(64) % 2).float(), dataset="random DNA", channels=channels)
    return [vis, lang, dna]


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


def _sharing_row(muir: Any, shorts: Sequence[str]) -> dict[str, Any]:
    psi0 = muir.alignment()
    model = muir.location_table()[:, 0]
    subsets = sharing_by_subset(psi0, model, muir.num_modules)
    return {"+".join(shorts[t] for t in k): v for k, v in subsets.items()}


# --------------------------------------------------------------------------------------------------
# training units
# --------------------------------------------------------------------------------------------------
def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3, fused=True)   # Adam defaults (S.4); fused on CPU/GPU


def _train_unit(tasks: Sequence[Any], row: str, budget: Budget, seed: int,
                log: Callable[[str], None]) -> dict[str, Any]:
    """Train ``tasks`` as one unit (one plain model, one ``muir-within`` model, or all tasks ``muir-across``)."""
    models = []
    for t in tasks:                                # each task's own seed: the same adapter init in every row
        torch.manual_seed(1000 * seed + ord(t.short))
        models.append(t.model())
    torch.manual_seed(seed)
    plain_params = sum(p.numel() for m in models for p in m.parameters())
    muir, history = None, []
    if row == "baseline":
        nets = models
        opt = _adam([p for m in models for p in m.parameters()])
    else:
        cfg = budget.config(seed)
        muir = reparameterize(models, config=cfg)   # default targets: all but first/last layer
        nets = [muir[i] for i in range(len(tasks))]
        opt = _adam(muir.param_groups(lr=1e-3))
    losses = [t.trainer(m, seed) for t, m in zip(tasks, nets)]
    for m in nets:
        m.train()
    running = torch.zeros(len(tasks), dtype=torch.float64)
    seen = [0]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        parts = [f() for f in losses]
        sum(parts).backward()
        opt.step()
        running.add_(torch.stack([p.detach() for p in parts]).double())
        seen[0] += 1

    t0 = time.perf_counter()
    if muir is None:
        for _ in range(budget.steps):
            step()
    else:
        shorts = [t.short for t in tasks]
        history.append({"generation": 0, "step": 0, **muir.stats(), "subsets": _sharing_row(muir, shorts)})

        def on_generation(stats: dict[str, Any]) -> None:
            loss = (running / max(seen[0], 1)).tolist()
            running.zero_(), seen.__setitem__(0, 0)
            row_ = {**stats, "step": budget.n_init + stats["generation"] * budget.n_iter,
                    "subsets": _sharing_row(muir, shorts), "train_loss": dict(zip(shorts, loss))}
            history.append(row_)
            if stats["generation"] % max(1, budget.generations // 5) == 0:
                log(f"{row} {'+'.join(shorts)} generation {stats['generation']}/{budget.generations}: "
                    f"active {stats['active']}/{muir.num_modules}, {time.perf_counter() - t0:.0f}s")
        fit(muir, step, opt, on_generation=on_generation)
    train_s = time.perf_counter() - t0
    metrics = {t.short: float(t.evaluate(m)) for t, m in zip(tasks, nets)}
    out: dict[str, Any] = {"row": row, "tasks": [t.short for t in tasks], "seed": seed, "metrics": metrics,
                           "train_seconds": round(train_s, 2), "steps": budget.steps,
                           "step_seconds": round(train_s / max(budget.steps, 1), 4), "plain_params": plain_params}
    if muir is not None:
        st = muir.stats()
        table = muir.location_table()
        out.update(stats=st, history=history, num_modules=muir.num_modules, psi0=muir.alignment().tolist(),
                   layout=table[:, :2].tolist(), targets=muir.targets,
                   total_params=sum(p.numel() for p in muir.parameters()))
    return out


def _unit_path(out: Path, budget_name: str, seed: int, row: str, tasks: Sequence[Any]) -> Path:
    return out / "muir-crossmodal" / budget_name / f"seed{seed}" / f"{row}_{'+'.join(t.short for t in tasks)}.json"


def run_units(tasks: Sequence[Any], budget: Budget, seeds: int, out: Path, budget_name: str, resume: bool,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every (seed, row, task) unit; finished units are read back from ``out`` when ``resume``."""
    fingerprint = {"budget": dataclasses.asdict(budget), "tasks": [t.describe() for t in tasks]}
    results = []
    for seed in range(seeds):
        plan = ([("baseline", [t]) for t in tasks] + [("muir-within", [t]) for t in tasks]
                + [("muir-across", list(tasks))])
        for row, group in plan:
            path = _unit_path(out, budget_name, seed, row, group)
            if resume and path.is_file():
                saved = json.loads(path.read_text())
                if saved.get("fingerprint") == json.loads(json.dumps(fingerprint)):
                    log(f"seed {seed} {row} {'+'.join(t.short for t in group)}: reused {path}")
                    results.append(saved)
                    continue
            log(f"seed {seed} {row} {'+'.join(t.short for t in group)}: training {budget.steps} steps")
            res = _train_unit(group, row, budget, seed, log)
            res["fingerprint"] = fingerprint
            save_json(path, res, indent=None)
            log(f"seed {seed} {row} {'+'.join(t.short for t in group)}: {res['metrics']} "
                f"({res['train_seconds']:.0f}s, {1e3 * res['step_seconds']:.0f} ms/step)")
            results.append(res)
    return results


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


def run(opts: RunOptions, *, tasks: Sequence[Any] | None = None, budget: Budget | None = None,
        vision: str = "fashion_mnist") -> dict[str, Any]:
    """Table 3 + Fig. 3 analog (``opts.seeds`` seeds, default 1). ``tasks`` / ``budget`` override the real
    tasks and the named budget (tests use tiny synthetic stand-ins)."""
    from ..data import resolve_root
    budget_name = "quick" if opts.budget == "quick" else "default"
    budget = budget or BUDGETS[budget_name]
    seeds = opts.seeds if opts.seeds is not None else 1
    log = lambda msg: print(f"[muir-crossmodal] {msg}", flush=True)  # noqa: E731
    report = Report("muir-crossmodal", device="cpu")
    with intra_op_threads(1):  # small per-op work on a shared CPU: one thread avoids OpenMP contention
        t0 = time.perf_counter()
        if tasks is None:
            tasks = load_tasks(resolve_root(opts.data_root), budget, vision=vision)
        log(f"data ready in {time.perf_counter() - t0:.1f}s")
        results = run_units(tasks, budget, seeds, Path(opts.out), budget_name, opts.resume, log)
    report.config.update({
        "budget": budget_name, "seeds": seeds, **dataclasses.asdict(budget), "generations": budget.generations,
        "muir": budget.config(0).to_dict(), "optimizer": "Adam lr 1e-3 (defaults), fused; scores lr 0.1",
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
