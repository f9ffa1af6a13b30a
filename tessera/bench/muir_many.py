"""``tessera bench muir-many-tasks``: one MUiR generation for many small same-architecture tasks,
the public API (one model per task, vectorized) over a hand-written batched loop.

* **Synthetic** (paper 003 §4.1, Table 2's workload): 2 settings x S seeds x {Random, Oracle, MUiR}
  universes of 30 Linear(20, 1) tasks, plus STL. Reference: :class:`~.muir_reference.SyntheticProgram`
  (one ``mix``, analytic gradients, its own Adam). Candidate: what ``tessera reproduce muir-synthetic``
  runs -- ``reparameterize`` on every task's model (one vectorized group), the engine
  (one :class:`~tessera.train.Trainer` for the MUiR group and the STL group, :class:`~tessera.hyper.MuirSearch`
  with per-universe validation, :class:`~tessera.train.best.KeepBest` for STL). One generation = begin, 100 steps, select, validate.
* **Digits CNNs**: 30 small CNNs (Conv 1->8, Conv 8->8 stride 2 reparameterized with 8x8 blocks,
  c = 4, lambda = 4, p = 0.5, Linear 72->10) on 8x8 digits (sklearn), batch 32 per task. Reference: the
  same networks written by hand as one batched program (grouped convolutions, the conv2 weights by one
  ``mix``, autograd, one flat Adam). Candidate: ``reparameterize`` + the engine + ``MuirSearch``.
  One generation = begin, ``n_iter`` steps, select.

Both paths are timed in ONE :func:`~.timing.compare` call (interleaved rounds, medians); ratio =
API / reference. Target: <= 1.3. The search step alone (``MuirModels.begin_generation`` + ``end_generation`` vs
the bare :class:`~tessera.hyper.search.AlignmentSearch` calls) is timed at 30, 10^4 and 10^5 locations,
and ``tessera.core.mix`` forward + backward against ``embedding_bag`` with its own backward (the
reference) at the Table 2 size, at 10^5 locations and with wide (16x16) blocks, where ``mix`` keeps
``embedding_bag``'s backward.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import mix
from ..experiments import RunOptions
from ..hyper import MuirConfig, MuirSearch, reparameterize
from ..hyper.search import AlignmentSearch
from ..results import Report
from ..threads import intra_op_threads
from ..train import Task, Trainer, TrainConfig
from .muir_reference import SyntheticProgram, _Adam
from .timing import compare

__all__ = ["run", "synthetic_fns", "cnn_fns", "TARGET"]

TARGET = 1.3
T_CNN, BATCH, CLASSES = 30, 32, 10


def _fake_synthetic(seed: int = 0) -> dict[str, dict[str, Any]]:
    """Random data of the synthetic benchmark's shapes (timing only)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for s in ("clean", "noisy"):
        X, Xt = torch.rand(30, 15, 20, generator=g) * 2 - 1, torch.rand(30, 50, 20, generator=g) * 2 - 1
        w = torch.randn(30, 20, generator=g)
        out[s] = {"train_X": X.numpy(), "train_Y": torch.einsum("tsd,td->ts", X, w).numpy(),
                  "test_X": Xt.numpy(), "test_Y": torch.einsum("tsd,td->ts", Xt, w).numpy()}
    return out


def synthetic_fns(seeds: int, data: dict[str, Any] | None = None) -> dict[str, Callable[[], Any]]:
    """``{"reference": one generation of the hand loop, "api": one generation through the public API}``."""
    from ..experiments import muir_synthetic as ms
    data = data or _fake_synthetic()
    val = [1, 3, 8, 6, 14]
    cfg = MuirConfig.synthetic(n_generations=10**6, n_final=0)
    prog = SyntheticProgram(data, seeds, cfg, val, torch.device("cpu"))

    def reference() -> None:
        prog.begin_generation()
        for _ in range(cfg.n_iter):
            prog.step(merging=True)
        prog.end_generation()
        prog.rmse(prog.Xva, prog.Yva)

    run = ms.build(data, seeds, cfg, val)
    tr = ms.engine(run, cfg, ms.callbacks(run, cfg))

    def api() -> None:
        tr.run(tr.step + cfg.n_iter)                        # MuirSearch + KeepBest validate at the end
    return {"reference": reference, "api": api}


def _digits(T: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``X (T, n, 1, 8, 8)``, ``y (T, n)``: task t = a random 600-image subset of sklearn's digits."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = torch.tensor(d.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0, torch.tensor(d.target)
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(len(y), generator=g)[:600] for _ in range(T)])   # (T, 600)
    return x[idx], y[idx]


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(8 * 2 * 2, CLASSES))


class _HandCNNs:
    """T CNNs as one batched program: grouped convolutions, conv2's 9 blocks per task by ONE ``mix``."""

    def __init__(self, T: int, cfg: MuirConfig):
        L, c, J = 9 * T, cfg.context, cfg.lam + 1
        shapes = {"w1": (T * 8, 1, 3, 3), "b1": (T * 8,), "H": (L * c, 64), "z": (L, c), "b2": (T * 8,),
                  "w3": (T, CLASSES, 32), "b3": (T, CLASSES)}
        self.sizes = {k: math.prod(s) for k, s in shapes.items()}
        self.shapes = shapes
        self.theta = torch.randn(sum(self.sizes.values())) * 0.1
        self.theta.requires_grad_(True)
        self.s = torch.zeros(L, J, requires_grad=True)
        self.opt, self.opt_s = _Adam(self.theta.data, 1e-3), _Adam(self.s.data, cfg.lr_scores)
        self.search = AlignmentSearch(L, lam=cfg.lam, p=cfg.p, eps=cfg.eps, seed=0)
        self.psi0 = self.search.init_alignment()
        self.cand = self.psi0[:, None].repeat(1, J)
        self.T, self.c, self.merging = T, c, False

    def views(self) -> dict[str, Tensor]:
        return {k: v.view(self.shapes[k]) for k, v in zip(self.sizes, self.theta.split(list(self.sizes.values())))}

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        p, T, c = self.views(), self.T, self.c
        j = torch.arange(c)
        if self.merging:
            coeff = (torch.softmax(self.s, -1)[:, :, None] * p["z"][:, None, :]).flatten(1)   # (L, J*c)
            rows = (self.cand[:, :, None] * c + j).flatten(1)
        else:
            coeff, rows = p["z"], self.psi0[:, None] * c + j                                  # (L, c)
        w2 = mix(p["H"], coeff, rows).view(T, 3, 3, 8, 8).permute(0, 4, 3, 1, 2).reshape(T * 8, 8, 3, 3)
        B = x.shape[1]
        h = x.transpose(0, 1).reshape(B, T, 8, 8)                                          # (B, T*1, 8, 8)
        h = F.relu(F.conv2d(h, p["w1"], p["b1"], groups=T))                                 # (B, T*8, 6, 6)
        h = F.relu(F.conv2d(h, w2, p["b2"], stride=2, groups=T))                            # (B, T*8, 2, 2)
        h = h.view(B, T, 32).transpose(0, 1)                                                # (T, B, 32)
        logits = torch.baddbmm(p["b3"][:, None], h, p["w3"].transpose(1, 2))                # (T, B, 10)
        return F.cross_entropy(logits.reshape(-1, CLASSES), y.reshape(-1)) * T

    def step(self, x: Tensor, y: Tensor) -> None:
        g_theta, g_s = torch.autograd.grad(self.loss(x, y), (self.theta, self.s), allow_unused=True)
        self.opt.step(g_theta)
        if self.merging and g_s is not None:
            self.opt_s.step(g_s)

    @torch.no_grad()
    def begin(self) -> None:
        self.cand = self.search.propose(self.psi0)
        self.s.zero_()
        self.opt_s.reset()
        self.merging = True

    @torch.no_grad()
    def end(self) -> None:
        self.psi0 = self.search.select(self.cand, self.s)
        self.cand = self.psi0[:, None].expand_as(self.cand).clone()
        self.merging = False


def cnn_fns(n_iter: int, T: int = T_CNN) -> dict[str, Callable[[], Any]]:
    """``{"reference": hand-batched CNNs, "api": reparameterize + engine}``: one generation each."""
    X, Y = _digits(T)
    cfg = MuirConfig(block=(8, 8), context=4, lam=4, p=0.5, lr_scores=0.1, n_init=0, n_iter=n_iter,
                     n_generations=10**6, n_final=0).validate()
    hand = _HandCNNs(T, cfg)
    g = torch.Generator().manual_seed(0)

    def reference() -> None:
        hand.begin()
        for _ in range(n_iter):
            idx = torch.randint(0, X.shape[1], (BATCH,), generator=g)
            hand.step(X[:, idx], Y[:, idx])
        hand.end()

    torch.manual_seed(0)
    muir = reparameterize([_cnn() for _ in range(T)], config=cfg, verbose=False, vectorize=True)
    group = muir.task_groups[0]
    task = Task("digits", train=(X.transpose(0, 1).contiguous(), Y.t().contiguous()), metrics=["loss"],
                loss=lambda o, y: F.cross_entropy(o.reshape(-1, CLASSES), y.reshape(-1)) * T,
                forward=lambda m, x: group(x.transpose(0, 1)).transpose(0, 1))         # (B, T, 10)
    tc = TrainConfig(steps=10**9, batch_size=BATCH, progress="off", log_every=0, checkpoint_every=0, device="cpu",
                     optim={"name": "adam", "lr": 1e-3, "weight_decay": 0.0}, schedule={"name": "constant"},
                     ema={"enabled": False})
    tr = Trainer(muir, [task], tc, param_groups=muir.param_groups(lr=1e-3), callbacks=[MuirSearch(muir)])

    def api() -> None:
        tr.run(tr.step + n_iter)
    return {"reference": reference, "api": api}


SEARCH_SIZES = {"30 tasks x Linear(20, 1), block 20x1": (30, None), "10^4 locations (Linear(400, 400), block 4x4)": (1, 400),
                "10^5 locations (Linear(1264, 1264), block 4x4)": (1, 1264)}


def search_fns(tasks: int, width: int | None) -> dict[str, Callable[[], Any]]:
    """One search step (propose, score reset, select) through ``MuirModels.begin/end_generation`` vs the bare
    :class:`AlignmentSearch` calls of the hand loop, on the same number of locations."""
    if width is None:
        models, kw = [nn.Linear(20, 1, bias=False) for _ in range(tasks)], dict(block=(20, 1), context=1)
    else:
        models, kw = [nn.Linear(width, width)], dict(block=(4, 4), context=4)
    lam = 4
    muir = reparameterize(models, lam=lam, p=0.5, target_modules=[""], verbose=False, **kw)
    opt = torch.optim.Adam(muir.param_groups(lr=1e-3))
    search = AlignmentSearch(muir.search.L, lam=lam, p=0.5, eps=1e-4, seed=0)
    state = {"psi": search.init_alignment()}
    scores = torch.zeros(muir.search.L, lam + 1)                 # (L, J): one score per candidate

    def reference() -> None:
        cand = search.propose(state["psi"])
        scores.zero_()
        state["psi"] = search.select(cand, scores)

    def api() -> None:
        muir.begin_generation(opt)
        muir.end_generation()
    return {"reference": reference, "api": api}


MIX_SIZES = {"Table 2: 1,800 blocks of 20x1, 5 candidates": (1800, 5, 20, 1800),
             "10^5 blocks of 4x4, 5 candidates": (10**5, 5, 16, 4 * 10**5),
             "4,096 blocks of 16x16, 5 candidates (wide: embedding_bag's backward)": (4096, 5, 256, 4096)}


def mix_fns(L: int, J: int, P: int, R: int) -> dict[str, Callable[[], Any]]:
    """``mix`` forward + backward (bank and coefficients) vs ``embedding_bag`` with its own backward."""
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(R, P, generator=g).requires_grad_()
    coeff = torch.randn(L, J, generator=g).requires_grad_()
    index = torch.randint(0, R, (L, J), generator=g)
    up = torch.randn(L, P, generator=g)

    def reference() -> None:
        F.embedding_bag(index, bank, per_sample_weights=coeff, mode="sum").backward(up)

    def api() -> None:
        mix(bank, coeff, index).backward(up)
    return {"reference": reference, "api": api}


def run(opts: RunOptions, *, _smoke: bool = False) -> dict[str, Any]:
    """Time one generation of both workloads, interleaved, and write the rows."""
    quick = opts.budget == "quick" or _smoke
    seeds = opts.seeds if opts.seeds is not None else (1 if quick else 10)
    rounds, warmup, n_iter = (3, 1, 10) if quick else (9, 2, 100)
    if _smoke:
        rounds, warmup, n_iter = 1, 0, 2
    rep = Report("muir-many-tasks", device="cpu")
    rep.config = {"threads": 1, "rounds": rounds, "warmup": warmup, "target_ratio": TARGET,
                  "synthetic": {"seeds": seeds, "universes": 6 * seeds, "tasks_per_universe": 30,
                                "steps_per_generation": 100, "inputs": "random data of the benchmark's shapes"},
                  "cnn": {"tasks": T_CNN, "batch": BATCH, "steps_per_generation": n_iter, "data": "sklearn digits"},
                  "reference": "hand-written batched loops (tessera.bench.muir_reference, _HandCNNs)",
                  "candidate": "reparameterize (one model per task, vectorized) + Trainer + MuirSearch"}
    with intra_op_threads(1):
        fns = {f"syn/{k}": f for k, f in synthetic_fns(seeds).items()}
        fns.update({f"cnn/{k}": f for k, f in cnn_fns(n_iter).items()})
        print(f"muir-many-tasks: timing {len(fns)} generation functions, {rounds} interleaved rounds ...", flush=True)
        t = compare(fns, warmup=warmup, rounds=rounds)
        sizes = dict(list(SEARCH_SIZES.items())[:1]) if _smoke else SEARCH_SIZES
        search = {label: compare(search_fns(*size), warmup=warmup, rounds=max(rounds, 5), inner=1 if _smoke else 20)
                  for label, size in sizes.items()}      # search steps: short, so timed in their own rounds
        mixes = {label: compare(mix_fns(*size), warmup=1, rounds=max(rounds, 5),
                                inner=1 if _smoke or size[0] > 10**4 else 20)
                 for label, size in (list(MIX_SIZES.items())[:1] if _smoke else MIX_SIZES.items())}
    rep.add_bench_row(setting=f"synthetic: {6 * seeds} universes x 30 Linear(20, 1) + STL (Table 2 workload, "
                              f"{seeds} seed(s))", method="public API (vectorized) vs hand-written batched loop",
                      metric="generation_s", baseline_s=t["syn/reference"], candidate_s=t["syn/api"],
                      target_ratio=TARGET)
    rep.add_bench_row(setting=f"digits: {T_CNN} small CNNs, batch {BATCH} each, {n_iter} steps",
                      method="public API (vectorized) vs hand-written batched loop", metric="generation_s",
                      baseline_s=t["cnn/reference"], candidate_s=t["cnn/api"], target_ratio=TARGET)
    for label, ts in search.items():
        rep.add_bench_row(setting=f"search step: {label}", method="MuirModels.begin/end_generation vs bare "
                          "AlignmentSearch", metric="search_step_s", baseline_s=ts["reference"],
                          candidate_s=ts["api"], target_ratio=TARGET)
    for label, ts in mixes.items():
        rep.add_bench_row(setting=f"mix forward + backward: {label}", method="tessera.core.mix vs embedding_bag "
                          "(its own backward)", metric="mix_s", baseline_s=ts["reference"], candidate_s=ts["api"],
                          target_ratio=TARGET)
    return rep.write(opts.json)
