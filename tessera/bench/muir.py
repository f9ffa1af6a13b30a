"""``tessera bench muir-overhead``: a MUiR training step through the engine over a plain PyTorch step.

The three cross-architecture models of ``tessera reproduce muir-crossmodal`` with exactly its settings
(LeNet / batch 128 of 1x28x28; 2x128 tied LSTM LM / batch 20 x 35 tokens with the state carried,
vocab 10000; DeepBind-32 / batch 256 of 4x101; Adam lr 1e-3 with torch's defaults; one torch thread),
on random inputs of those shapes.

* **Baseline** (the reference): a hand-written plain PyTorch step -- draw the batch, forward, loss,
  ``zero_grad`` + ``backward`` + ``Adam.step()`` -- on the unmodified model.
* **Candidate**: what users run -- the model reparameterized with 16x16 blocks, c = 4, lambda = 1 and
  **every** location soft-merging two candidates (p = 1, the most expensive phase of Alg. 2, Eq. 8),
  one :meth:`tessera.train.Trainer.train_step` of the engine (batch from the Task, forward, loss,
  ``autograd.grad``, Adam step, logging scalars). The same with the alignment fixed (Eq. 5) is
  reported alongside as ``fixed_s``.

Rows: one per model, ``total`` (summed step times of the three), and ``joint L+S+D`` (all three
reparameterized into ONE bank trained by one engine run with summed losses, as ``muir-across``, over
the three plain models stepped together by hand). Everything is timed in ONE
:func:`tessera.bench.timing.compare` call (interleaved rounds, medians), so load drifts hit all alike.
Target: ratio <= 1.3 (the paper: about 1 + lambda = 2).
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..experiments import RunOptions
from ..experiments.muir_tasks import LanguageTask, synthetic_tasks
from ..hyper import MuirConfig, reparameterize
from ..results import Report
from ..threads import intra_op_threads
from ..train import Trainer, TrainConfig
from ..train.bptt import TokenStream
from .timing import compare

__all__ = ["run", "step_fns"]

TARGET = 1.3


def _plain_loss(task: Any, net: nn.Module) -> Callable[[], Tensor]:
    """Hand-written reference: the next batch of ``task`` (a fresh permutation per epoch, or the next BPTT
    chunk with the state carried) and its loss on ``net``."""
    g = torch.Generator().manual_seed(0)
    k = [0]
    if isinstance(task, LanguageTask):
        stream, state = TokenStream(task.train_tokens, task.batch, task.bptt), [None]
        B = task.batch

        def lm() -> Tensor:
            (x, _), y = stream[torch.arange(k[0] * B, (k[0] + 1) * B)]
            k[0] = (k[0] + 1) % stream.chunks
            out, st = net(x, state[0])
            state[0] = tuple(s.detach() for s in st)
            return F.cross_entropy(out, y.reshape(-1))
        return lm
    x, y, b = task.x, task.y, task.batch
    perm = [torch.randperm(len(y), generator=g)]
    bce = y.is_floating_point()

    def sup() -> Tensor:
        if (k[0] + 1) * b > len(y):
            perm[0], k[0] = torch.randperm(len(y), generator=g), 0
        i = perm[0][k[0] * b:(k[0] + 1) * b]
        k[0] += 1
        out = net(x[i])
        return F.binary_cross_entropy_with_logits(out, y[i]) if bce else F.cross_entropy(out, y[i])
    return sup


def _plain_step(nets: Sequence[nn.Module], tasks: Sequence[Any]) -> Callable[[], None]:
    opt = torch.optim.Adam([p for m in nets for p in m.parameters()], lr=1e-3)
    losses = [_plain_loss(t, m) for t, m in zip(tasks, nets)]
    for m in nets:
        m.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        sum(f() for f in losses).backward()
        opt.step()
    return step


def _engine_step(models: Sequence[nn.Module], tasks: Sequence[Any], cfg: MuirConfig, merge: bool) -> Callable[[], Any]:
    muir = reparameterize(list(models), config=cfg)
    train = TrainConfig(steps=10**9, batch_size=128, multitask="sum", device="cpu", log_every=0, checkpoint_every=0,
                        progress="off", optim={"name": "adam", "lr": 1e-3, "eps": 1e-8, "weight_decay": 0.0},
                        schedule={"name": "constant"}, ema={"enabled": False})
    trainer = Trainer(muir, [t.task(i) for i, t in enumerate(tasks)], train, param_groups=muir.param_groups(lr=1e-3))
    if merge:
        muir.begin_generation(trainer.optimizer)     # p = 1: every location soft-merges lambda + 1 candidates
    return lambda: trainer.train_step(trainer.step)


def step_fns(tasks: Sequence[Any], cfg: MuirConfig) -> dict[str, Callable[[], Any]]:
    """``{"<short>/plain|merge|fixed": step, "joint/plain|merge|fixed": step}`` for the given tasks."""
    fns: dict[str, Callable[[], Any]] = {}
    groups = [(t.short, [t]) for t in tasks] + [("joint", list(tasks))]
    for key, group in groups:
        torch.manual_seed(0)
        plain = [t.model() for t in group]
        fns[f"{key}/plain"] = _plain_step([copy.deepcopy(m) for m in plain], group)
        for mode in ("merge", "fixed"):
            fns[f"{key}/{mode}"] = _engine_step([copy.deepcopy(m) for m in plain], group, cfg, mode == "merge")
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
                  "warmup": warmup, "optimizer": "Adam lr 1e-3, torch defaults (plain and MUiR alike)",
                  "baseline": "hand-written plain PyTorch step (batch, forward, loss, backward, Adam.step)",
                  "candidate": "tessera.train.Trainer.train_step of the reparameterized model, every location "
                               "soft-merging lambda + 1 = 2 candidates (Eq. 8)",
                  "fixed_s": "the same engine step with the alignment fixed (Eq. 5)",
                  "inputs": "random tensors of the experiment's shapes (timing only)",
                  "tasks": {x.short: x.describe() for x in tasks}, "target_ratio": TARGET}
    for x in tasks:
        d = x.describe()
        shape = f"batch {d['batch']}" + (f" x {d['bptt']} tokens" if "bptt" in d else "")
        rep.add_bench_row(setting=f"{x.short}: {d['model']}, {shape}", method="MUiR soft-merge (engine) vs plain",
                          metric="train_step_s", baseline_s=t[f"{x.short}/plain"], candidate_s=t[f"{x.short}/merge"],
                          fixed_s=t[f"{x.short}/fixed"], fixed_ratio=t[f"{x.short}/fixed"] / t[f"{x.short}/plain"],
                          target_ratio=TARGET)
    tot = {m: sum(t[f"{x.short}/{m}"] for x in tasks) for m in ("plain", "merge", "fixed")}
    rep.add_bench_row(setting="total (sum of the three step times)", method="MUiR soft-merge (engine) vs plain",
                      metric="train_step_s", baseline_s=tot["plain"], candidate_s=tot["merge"], fixed_s=tot["fixed"],
                      fixed_ratio=tot["fixed"] / tot["plain"], target_ratio=TARGET)
    rep.add_bench_row(setting="joint L+S+D (one bank, one Adam; summed losses)",
                      method="MUiR soft-merge (engine) vs plain", metric="train_step_s", baseline_s=t["joint/plain"],
                      candidate_s=t["joint/merge"], fixed_s=t["joint/fixed"],
                      fixed_ratio=t["joint/fixed"] / t["joint/plain"], target_ratio=TARGET)
    return rep.write(opts.json)
