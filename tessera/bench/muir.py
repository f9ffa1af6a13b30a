"""``tessera bench muir-overhead``: a MUiR training step over the plain model's, side by side.

The three cross-architecture models of ``tessera reproduce muir-crossmodal`` with exactly its settings
(LeNet / batch 128 of 1x28x28; 2x128 tied LSTM LM / batch 20 x 35 tokens, vocab 10000; DeepBind-32 /
batch 256 of 4x101; Adam lr 1e-3 fused; one torch thread), on random inputs of those shapes, through
the experiment's own step closures. A step is zero_grad + forward + loss + backward + Adam step.

Candidates: each model reparameterized with 16x16 blocks, c = 4, lambda = 1 and **every** location
soft-merging two candidates (p = 1, i.e. the most expensive phase of Alg. 2, Eq. 8); the same with the
alignment fixed (Eq. 5) is reported alongside as ``fixed_s``. Rows: one per model, ``total`` (summed
step times of the three), and ``joint L+S+D`` (all three reparameterized into ONE bank with one Adam,
as ``muir-across``, over the three plain models stepped together). Everything is timed in ONE
:func:`tessera.bench.timing.compare` call (interleaved rounds, medians), so load drifts hit all alike.
Target: ratio <= 1.3 (the paper: about 1 + lambda = 2).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch

from ..experiments import RunOptions
from ..experiments.muir_crossmodal import _adam, synthetic_tasks
from ..hyper import MuirConfig, reparameterize
from ..results import Report
from ..threads import intra_op_threads
from .timing import compare

__all__ = ["run", "step_fns"]

TARGET = 1.3


def _step(nets: Sequence[torch.nn.Module], tasks: Sequence[Any], opt: torch.optim.Optimizer) -> Callable[[], None]:
    losses = [t.trainer(m, 0) for t, m in zip(tasks, nets)]
    for m in nets:
        m.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        sum(f() for f in losses).backward()
        opt.step()
    return step


def step_fns(tasks: Sequence[Any], cfg: MuirConfig) -> dict[str, Callable[[], None]]:
    """``{"<short>/plain|merge|fixed": step, "joint/plain|merge|fixed": step}`` for the given tasks."""
    fns: dict[str, Callable[[], None]] = {}
    groups = [(t.short, [t]) for t in tasks] + [("joint", list(tasks))]
    for key, group in groups:
        torch.manual_seed(0)
        plain = [t.model() for t in group]
        fns[f"{key}/plain"] = _step(plain, group, _adam([p for m in plain for p in m.parameters()]))
        for mode in ("merge", "fixed"):
            muir = reparameterize([copy.deepcopy(m) for m in plain], config=cfg, verbose=False)
            opt = _adam(muir.param_groups(lr=1e-3))
            if mode == "merge":
                muir.begin_generation(opt)        # p = 1: every location soft-merges lambda + 1 candidates
            fns[f"{key}/{mode}"] = _step([muir[i] for i in range(len(group))], group, opt)
    return fns


def run(opts: RunOptions, *, _smoke: bool = False) -> dict[str, Any]:
    """Time the plain and MUiR training steps of the three models and write the rows."""
    quick = opts.budget == "quick"
    rounds, warmup = (7, 2) if quick else (31, 3)
    kw: dict[str, Any] = {}
    if _smoke:   # tiny shapes for the test-suite
        rounds, warmup = 1, 0
        kw = dict(images=256, vocab=64, tokens=2000, sequences=256, hidden=16, channels=16)
    cfg = MuirConfig(block=(16, 16), context=4, lam=1, p=1.0, lr_scores=0.1).validate()
    rep = Report("muir-overhead", device="cpu")
    with intra_op_threads(1):  # the experiment's setting
        tasks = synthetic_tasks(0, **kw)
        fns = step_fns(tasks, cfg)
        print(f"muir-overhead: timing {len(fns)} training steps, {rounds} interleaved rounds ...", flush=True)
        t = compare(fns, warmup=warmup, rounds=rounds)
    rep.config = {"block": [16, 16], "context": 4, "lam": 1, "p": 1.0, "threads": 1, "rounds": rounds,
              "warmup": warmup, "optimizer": "Adam lr 1e-3, fused (plain and MUiR alike)",
              "inputs": "random tensors of the experiment's shapes (timing only)",
              "tasks": {x.short: x.describe() for x in tasks},
              "candidate": "every location soft-merging lambda + 1 = 2 candidates (Eq. 8)",
              "fixed_s": "the MUiR step with the alignment fixed (Eq. 5)", "target_ratio": TARGET}
    for x in tasks:
        d = x.describe()
        shape = f"batch {d['batch']}" + (f" x {d['bptt']} tokens" if "bptt" in d else "")
        rep.add_bench_row(setting=f"{x.short}: {d['model']}, {shape}", method="MUiR soft-merge vs plain",
                          metric="train_step_s", baseline_s=t[f"{x.short}/plain"], candidate_s=t[f"{x.short}/merge"],
                          fixed_s=t[f"{x.short}/fixed"], fixed_ratio=t[f"{x.short}/fixed"] / t[f"{x.short}/plain"],
                          target_ratio=TARGET)
    tot = {m: sum(t[f"{x.short}/{m}"] for x in tasks) for m in ("plain", "merge", "fixed")}
    rep.add_bench_row(setting="total (sum of the three step times)", method="MUiR soft-merge vs plain",
                      metric="train_step_s", baseline_s=tot["plain"], candidate_s=tot["merge"], fixed_s=tot["fixed"],
                      fixed_ratio=tot["fixed"] / tot["plain"], target_ratio=TARGET)
    rep.add_bench_row(setting="joint L+S+D (one bank, one Adam; summed losses)", method="MUiR soft-merge vs plain",
                      metric="train_step_s", baseline_s=t["joint/plain"], candidate_s=t["joint/merge"],
                      fixed_s=t["joint/fixed"], fixed_ratio=t["joint/fixed"] / t["joint/plain"], target_ratio=TARGET)
    return rep.write(opts.json)
