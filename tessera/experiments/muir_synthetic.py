"""``tessera reproduce muir-synthetic``: Table 2 and Fig. 2 of paper 003 on the paper's own 30 tasks,
through the public API: ``reparameterize`` builds the models, the engine (:mod:`tessera.train`) trains.

Protocol (§4.1, S.3-S.4): Linear(20 -> 1, no bias) per task; MUiR with c = 1, block 20x1 (one location
per task), lambda = 4, p = 0.5, eps = 1e-4, Adam lr 1e-3 (scores 0.01), full batch of the 10 training
samples, 1000 generations x 100 steps, the best-validation state (5 samples per task, indices from
``np.random.seed(301)``) restored, then 200 x 100 steps with the alignment fixed. STL: a plain Linear per
task (nn.Linear's init), same steps and restore. Random: a random candidate instead of the argmax.
Oracle: psi fixed to the true 3 groups. Metric: mean over tasks of the per-task test RMSE.

Every (setting, seed, method) is an independent *universe* of 30 task models: all 30*U models are
reparameterized together with ``groups=`` keeping universes apart, so they form ONE vectorized task
group (:mod:`tessera.hyper.vectorize`) trained with :class:`~tessera.hyper.MuirSearch` (per-universe
best-validation restore; ``search.set_location_modes`` freezes the Oracle alignments and makes the Random
universes pick at random). STL's 30*S plain models are one ``hyper.vectorize`` group with
:class:`~tessera.train.best.KeepBest`. ONE engine run trains both (two tasks, losses summed). The hand-written batched program this
replaced is kept in :mod:`tessera.bench.muir_reference` as the timing reference of
``tessera bench muir-many-tasks``.

Resume: the engine run checkpoints every 50 generations under ``<out>/muir-synthetic/engine-<fingerprint>/``
(the search history included, as callback state); a killed run continues from there, and a finished
one is reused (``--fresh`` starts over). The fingerprint covers the schedule, the seeds and the data.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..hyper import MuirConfig, MuirModels, MuirSearch, reparameterize, search_steps, vectorize
from ..hyper.vectorize import TaskGroup
from ..hyper.accounting import same_partition
from ..results import Report
from ..threads import intra_op_threads
from ..train import Task, Trainer, TrainConfig
from ..train.best import KeepBest
from ..train.method import Callback
from ..train.task import TensorData
from . import RunOptions
from .units import fingerprint

__all__ = ["run", "PAPER", "SyntheticRun", "build"]

PAPER = {("clean", "STL"): 1.35, ("clean", "MUiR+Random"): 1.26, ("clean", "MUiR+Oracle"): 0.77,
         ("clean", "MUiR"): 0.00, ("noisy", "STL"): 1.49, ("noisy", "MUiR+Random"): 4.67,
         ("noisy", "MUiR+Oracle"): 0.37, ("noisy", "MUiR"): 0.38}
"""Table 2 of paper 003 (MUiR + Optimization is the row ``MUiR``)."""
SETTINGS = ("clean", "noisy")
METHODS = ("MUiR+Random", "MUiR+Oracle", "MUiR")      # reparameterized universes; STL is separate
TASKS, DIM, GROUP = 30, 20, 10
TRUTH = torch.arange(TASKS) // GROUP                   # tasks 0-9, 10-19, 20-29


@dataclass
class SyntheticRun:
    """The models, data and engine runs of all universes.

    Universe u = (setting, seed, method), ``u = setting*C + seed*3 + method`` with C = 3S; its tasks are
    models ``u*30 .. u*30+29`` (= its locations: block 20x1 makes one location per model). STL universe
    v = ``setting*S + seed``, models ``v*30 ..``.
    """

    muir: MuirModels
    stl: TaskGroup
    data: dict[str, tuple[Tensor, Tensor]]              # split -> X (60, n, 20), Y (60, n, 1) per (setting, task)
    index: Tensor                                       # (N,) the data set (row of data) of every MUiR model
    stl_index: Tensor                                   # (N_stl,) the same for every STL model
    seeds: int
    history: list[Tensor] = field(default_factory=list)  # psi0 after every generation (with the initial one)

    @property
    def U(self) -> int:
        return len(SETTINGS) * len(METHODS) * self.seeds

    def loc_of(self, u: int) -> Tensor:
        return torch.arange(u * TASKS, (u + 1) * TASKS)

    def universe(self, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """setting, seed, method of universes ``u``."""
        C = len(METHODS) * self.seeds
        return u // C, (u % C) // len(METHODS), u % len(METHODS)


def _rmse(group: TaskGroup, X: Tensor, Y: Tensor, index: Tensor) -> Tensor:
    """``(universes,)`` mean over each universe's 30 tasks of the per-task RMSE (model t on data set index[t])."""
    with torch.no_grad():
        err = (group(X, input_index=index) - Y[index]).square().mean((1, 2)).sqrt()   # (N,)
    return err.view(-1, TASKS).mean(1)


def _task(group: TaskGroup, X: Tensor, Y: Tensor, index: Tensor, name: str) -> Task:
    """One engine task holding every data set's full batch (samples on dim 0, data sets on dim 1); the models
    of the 3S universes that share a data set read it once (``input_index``)."""
    scale = 1.0 / (TASKS * X.shape[1])                                               # mean within a universe

    def loss(out: Tensor, y: Tensor) -> Tensor:
        return (out - y.index_select(1, index)).square().sum() * scale                # sum over universes
    return Task(name, train=TensorData(X.transpose(0, 1).contiguous(), Y.transpose(0, 1).contiguous()),
                loss=loss, order="sequential", metrics=["loss"],
                forward=lambda m, x: group(x.transpose(0, 1), input_index=index).transpose(0, 1))   # (n, N, 1)


def _train_config(cfg: MuirConfig, seed: int, checkpoint_every: int = 0) -> TrainConfig:
    return TrainConfig(steps=search_steps(cfg), batch_size=10, multitask="sum", progress="off", log_every=0,
                       checkpoint_every=checkpoint_every,
                       device="cpu", seed=seed, optim={"name": "adam", "lr": 1e-3, "eps": 1e-8, "weight_decay": 0.0,
                                                             "fused": True},
                       schedule={"name": "constant"}, ema={"enabled": False})


def build(data: dict[str, dict[str, np.ndarray]], seeds: int, cfg: MuirConfig, val_index: list[int],
          dtype: torch.dtype = torch.float32, base_seed: int = 0) -> SyntheticRun:
    """All universes' models (MUiR: one ``reparameterize`` call; STL: one ``vectorize`` call) and data."""
    C = len(METHODS) * seeds
    U, V = len(SETTINGS) * C, len(SETTINGS) * seeds
    u = torch.arange(U).repeat_interleave(TASKS)                                     # (N,) universe of model
    task = torch.arange(TASKS).repeat(U)                                             # (N,) task of model
    tr = [i for i in range(15) if i not in set(val_index)]
    sets = {"train": ("train", tr), "val": ("train", val_index), "test": ("test", None)}

    out = {}
    for split, (key, idx) in sets.items():
        X = torch.stack([torch.as_tensor(data[s][f"{key}_X"]) for s in SETTINGS])       # (2, 30, n, 20)
        Y = torch.stack([torch.as_tensor(data[s][f"{key}_Y"]) for s in SETTINGS])
        if idx is not None:
            X, Y = X[:, :, idx], Y[:, :, idx]
        out[split] = (X.flatten(0, 1).to(dtype), Y.flatten(0, 1)[..., None].to(dtype))  # (60, n, 20), (60, n, 1)

    torch.manual_seed(base_seed)
    nets = [nn.Linear(DIM, 1, bias=False).to(dtype) for _ in range(U * TASKS)]
    muir = reparameterize(nets, config=cfg, target_modules=[""], groups=u.tolist(), verbose=False, vectorize=True)
    stl = vectorize([nn.Linear(DIM, 1, bias=False).to(dtype) for _ in range(V * TASKS)])
    stl_setting = torch.arange(V).repeat_interleave(TASKS) // seeds
    run = SyntheticRun(muir, stl, out, (u // C) * TASKS + task, stl_setting * TASKS + torch.arange(TASKS).repeat(V),
                       seeds)
    method = run.universe(u)[2]
    oracle = method == METHODS.index("MUiR+Oracle")
    psi = torch.where(oracle, u * TASKS + (task // GROUP) * GROUP, torch.arange(U * TASKS))
    muir.fix_alignment(psi)                                                          # Oracle: the true groups
    muir.search.set_location_modes(frozen=oracle, random_pick=method == METHODS.index("MUiR+Random"))
    return run


def engine(run: SyntheticRun, cfg: MuirConfig, callbacks: Any = (), seed: int = 0, out_dir: Path | None = None,
           run_config: Any = None, checkpoint_every: int | None = None) -> Trainer:
    """ONE engine run over both groups (the MUiR universes and STL): two tasks, losses summed, one Adam;
    with ``out_dir``, a checkpoint every ``checkpoint_every`` steps (default: 50 generations)."""
    muir, stl = run.muir, run.stl
    tasks = [_task(muir.task_groups[0], *run.data["train"], run.index, "muir"),
             _task(stl, *run.data["train"], run.stl_index, "stl")]
    groups = muir.param_groups(lr=1e-3) + [{"params": list(stl.parameters()), "lr": 1e-3}]
    every = (50 * cfg.n_iter if checkpoint_every is None else checkpoint_every) if out_dir is not None else 0
    return Trainer(nn.ModuleDict({"muir": muir, "stl": stl}), tasks, _train_config(cfg, seed, every), out_dir,
                   param_groups=groups, callbacks=callbacks, run_config=run_config)


class History(Callback):
    """The alignment after every generation (the initial one first), kept in the run's checkpoints so a
    resumed run has the whole history; also MuirSearch's ``on_generation``."""

    def __init__(self, run: SyntheticRun, cfg: MuirConfig, log: Any = None):
        self.run, self.cfg, self.log, self.t0 = run, cfg, log, time.perf_counter()
        run.history = [run.muir.alignment()]

    def __call__(self, row: dict[str, Any]) -> None:
        self.run.history.append(self.run.muir.alignment())
        g = len(self.run.history) - 1
        if self.log is not None and g % max(1, self.cfg.n_generations // 10) == 0:
            self.log(f"generation {g}/{self.cfg.n_generations}: {time.perf_counter() - self.t0:.1f}s")

    def state_dict(self) -> dict[str, Any]:
        return {"psi": torch.stack(self.run.history).to(torch.int32)}     # (G+1, N)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run.history = list(state["psi"].long().unbind(0))


def callbacks(run: SyntheticRun, cfg: MuirConfig, on_generation: Any = None) -> list[Any]:
    """MUiR's search with per-universe validation, and STL's per-universe best-validation restore."""
    group, stl = run.muir.task_groups[0], run.stl
    V = stl.stacks[0].shape[0] // TASKS
    return [MuirSearch(run.muir, validate=lambda: _rmse(group, *run.data["val"], run.index), on_generation=on_generation),
            KeepBest(stl.stacks, [torch.arange(V).repeat_interleave(TASKS)],
                     lambda: _rmse(stl, *run.data["val"], run.stl_index),
                     every=cfg.n_iter, until=cfg.n_init + cfg.n_generations * cfg.n_iter)]


def train(run: SyntheticRun, cfg: MuirConfig, log: Any = None, seed: int = 0, out_dir: Path | None = None,
          run_config: Any = None, checkpoint_every: int | None = None) -> dict[str, Tensor]:
    """The engine run (MUiR universes with the search, STL alongside); test RMSEs and the search history.
    With ``out_dir`` the run checkpoints there and continues from its last checkpoint."""
    muir = run.muir
    history = History(run, cfg, log)
    trainer = engine(run, cfg, callbacks(run, cfg, history) + [history], seed, out_dir, run_config, checkpoint_every)
    trainer.fit(resume=out_dir is not None)
    return {"muir": _rmse(muir.task_groups[0], *run.data["test"], run.index),
            "stl": _rmse(run.stl, *run.data["test"], run.stl_index),
            "psi": torch.stack(run.history)}


def active(run: SyntheticRun, psi: Tensor) -> Tensor:
    """``(G+1, U)`` active hypermodules per universe after every generation (module k is universe k // 30's)."""
    U = run.U
    used = torch.stack([torch.bincount(p, minlength=U * TASKS) > 0 for p in psi]).float()   # (G+1, N)
    return used.view(len(psi), U, TASKS).sum(2).long()


def _config(opts: RunOptions) -> tuple[MuirConfig, int]:
    seeds = opts.seeds if opts.seeds is not None else 10
    if opts.budget == "quick":
        return MuirConfig.synthetic(n_generations=10, n_iter=20, n_final=100), min(seeds, 2)
    return MuirConfig.synthetic(), seeds


def _first_grouping(run: SyntheticRun, psi: Tensor, cols: Tensor) -> list[int | None]:
    """Per universe in ``cols``: first generation whose alignment is the true 3-group partition."""
    out: list[int | None] = []
    for u in cols.tolist():
        hits = torch.nonzero(same_partition(psi[:, run.loc_of(u)], TRUTH)).squeeze(1)   # (G+1,) -> hits
        out.append(int(hits[0]) if hits.numel() else None)
    return out


def _plots(out: Path, run: SyntheticRun, psi: Tensor, act: Tensor, found: int | None) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - plotting is optional
        return []
    out.mkdir(parents=True, exist_ok=True)
    u = METHODS.index("MUiR")                                                         # clean, seed 0, MUiR
    shown_psi = psi[:, run.loc_of(u)] % TASKS                                         # (G+1, 30) module -> its task
    G = psi.shape[0] - 1
    shown = min(G, max(100, 2 * (found or 0)))
    fig, ax = plt.subplots(figsize=(10, 3.2))
    ax.imshow(shown_psi[: shown + 1].T.numpy(), aspect="auto", cmap="nipy_spectral", vmin=0, vmax=TASKS - 1,
              interpolation="nearest")
    ax.set_xlabel("generation"), ax.set_ylabel("task")
    ax.set_title(f"MUiR alignment, clean, seed 0 (colour = hypermodule); true grouping first at generation {found}")
    for y in (9.5, 19.5):
        ax.axhline(y, color="white", lw=0.8)
    paths = [str(out / "alignment.png")]
    fig.tight_layout(), fig.savefig(paths[0], dpi=120), plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    setting, _, method = run.universe(torch.arange(run.U))
    for si, s in enumerate(SETTINGS):
        for mi, m in enumerate(METHODS):
            cols = ((setting == si) & (method == mi)).nonzero().squeeze(1)
            ax.plot(act[:, cols].float().mean(1).numpy(), label=f"{m} ({s})", ls="-" if si == 0 else "--")
    ax.set_xscale("symlog"), ax.set_xlabel("generation"), ax.set_ylabel("active hypermodules (mean)")
    ax2 = ax.secondary_yaxis("right", functions=(lambda a: TASKS + a * DIM, lambda p: (p - TASKS) / DIM))
    ax2.set_ylabel("parameters (L c + K c m n)")
    ax.legend(fontsize=7)
    paths.append(str(out / "shrinkage.png"))
    fig.tight_layout(), fig.savefig(paths[1], dpi=120), plt.close(fig)
    return paths


def run(opts: RunOptions) -> dict[str, Any]:
    """Run Table 2 (both settings, all methods, ``opts.seeds`` seeds, default 10) and write the JSON."""
    from ..data import load_muir_synthetic, muir_validation_indices, resolve_root
    cfg, seeds = _config(opts)
    if opts.device not in ("auto", "cpu"):
        print(f"[muir-synthetic] runs on the CPU (tiny batched ops); --device {opts.device} ignored", flush=True)
    root = resolve_root(opts.data_root)
    data = {s: load_muir_synthetic(root, noisy=(s == "noisy")) for s in SETTINGS}
    val_index = [int(i) for i in muir_validation_indices()]
    report = Report("muir-synthetic", device="cpu",
                    config={**cfg.to_dict(), "seeds": seeds, "budget": opts.budget, "val_index": val_index,
                            "adam_lr": 1e-3, "batch": "full (10 per task)", "dtype": "float32",
                            "path": "public API: reparameterize (one vectorized group of 30*U Linear models) + "
                                    "MuirSearch; STL: hyper.vectorize + KeepBest; one Trainer for both"})
    run_config = {"muir": cfg.to_dict(), "seeds": seeds, "val_index": val_index, "dtype": "float32",
                  "data": [float(np.asarray(data[s]["train_Y"]).sum()) for s in SETTINGS]}
    work = Path(opts.out) / "muir-synthetic" / f"engine-{fingerprint(run_config)}"
    if not opts.resume and work.exists():
        shutil.rmtree(work)
    resumed = work.exists()
    if resumed:
        print(f"[muir-synthetic] continuing from {work} (--fresh starts over)", flush=True)
    with intra_op_threads(1):  # tiny ops: one thread avoids OpenMP contention on a shared CPU
        prog = build(data, seeds, cfg, val_index)
        t0 = time.perf_counter()
        res = train(prog, cfg, log=lambda msg: print(f"[muir-synthetic] {msg}", flush=True), out_dir=work,
                    run_config=run_config)
        train_s = time.perf_counter() - t0
    setting, _, method = prog.universe(torch.arange(prog.U))
    act = active(prog, res["psi"])
    for si, s in enumerate(SETTINGS):
        stl = res["stl"][si * seeds:(si + 1) * seeds]
        report.add_row(setting=s, method="STL", metric="rmse", values=stl.tolist(), lower_is_better=True,
                       paper=PAPER[(s, "STL")])
        for mi, m in enumerate(METHODS):
            cols = ((setting == si) & (method == mi)).nonzero().squeeze(1)
            report.add_row(setting=s, method=m, metric="rmse", values=res["muir"][cols].tolist(),
                           lower_is_better=True, paper=PAPER[(s, m)], final_active=act[-1, cols].float().mean().item())
    first: int | None = None
    for si, s in enumerate(SETTINGS):
        cols = ((setting == si) & (method == METHODS.index("MUiR"))).nonzero().squeeze(1)
        gens = _first_grouping(prog, res["psi"], cols)
        hit = [g for g in gens if g is not None]
        if si == 0:
            first = gens[0]
        report.add_row(setting=s, method="MUiR", metric="generations_to_grouping", values=hit,
                       lower_is_better=True, paper=59 if s == "clean" else None, found=f"{len(hit)}/{len(gens)}",
                       per_seed=gens, note="paper: Fig. 2 (one run) stays at the true grouping after generation 59")
    report.config["plots"] = _plots(Path(opts.out) / "muir-synthetic", prog, res["psi"], act, first)
    report.config["train_seconds"] = round(train_s, 2)
    report.config["resumed"] = resumed                                # train_seconds then covers the rest only
    report.config["steps_per_universe"] = search_steps(cfg)
    return report.write(opts.json)
