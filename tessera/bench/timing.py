"""Fair side-by-side timing: candidates run interleaved, in rounds, and the median is reported."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

__all__ = ["compare", "plain_step", "engine_step"]


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def compare(fns: dict[str, Callable[[], object]], *, warmup: int = 3, rounds: int = 15,
            inner: int = 1, device: torch.device | str | None = None) -> dict[str, float]:
    """Median seconds per call of each function, timed in interleaved rounds.

    Interleaving (A, B, A, B, ...) spreads machine noise (turbo, other processes) evenly over the
    candidates, so their *ratio* is stable even when absolute times drift.

    >>> t = compare({"a": lambda: sum(range(100)), "b": lambda: sum(range(100))}, rounds=3)
    >>> sorted(t)
    ['a', 'b']
    """
    for _ in range(warmup):
        for f in fns.values():
            f()
    _sync(device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fns[k]()
            _sync(device)
            samples[k].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
               loss: Callable[..., torch.Tensor] | None = None) -> Callable[[], None]:
    """The idiomatic plain-PyTorch training step on in-memory data: a shuffled minibatch by index,
    forward, loss, backward, optimizer step (the reference every engine timing is compared with)."""
    import torch.nn.functional as F
    loss_fn = loss or F.cross_entropy
    g = torch.Generator().manual_seed(0)
    model.train()

    def step() -> None:
        idx = torch.randperm(len(y), generator=g)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
    return step


def engine_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, optim: dict,
                loss: str = "cross_entropy") -> Callable[[], None]:
    """The same training step as users run it: ``tessera.train.Trainer.train_step`` over a task whose
    batch is all of ``(x, y)`` (shuffled each step), optimizer from ``optim``, no EMA, constant LR."""
    from ..train import Task, Trainer, TrainConfig
    cfg = TrainConfig(steps=10**9, batch_size=len(y), optim=optim, schedule={"name": "constant"},
                      ema={"enabled": False}, progress="off", log_every=0, checkpoint_every=0,
                      device=str(x.device))
    tr = Trainer(model, [Task("bench", train=(x, y), loss=loss)], cfg)

    def step() -> None:
        tr.train_step(tr.step)
    return step
