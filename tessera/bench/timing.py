"""Fair side-by-side timing: candidates run interleaved, in rounds, and the median is reported."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

__all__ = ["compare"]


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
