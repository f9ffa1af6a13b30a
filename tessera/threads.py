"""``intra_op_threads``: run a block (or a function, as a decorator) with few intra-op threads.

The experiments, demos and benchmarks here run small convolutions and matmuls, which gain little from
more threads; on a shared CPU, OpenMP threads waiting for each other made 2-thread runs up to ~10x
slower than 1-thread runs. The previous thread count is restored on exit, so callers (tests, notebooks)
are not affected.

>>> import torch
>>> before = torch.get_num_threads()
>>> with intra_op_threads(1):
...     torch.get_num_threads()
1
>>> torch.get_num_threads() == before
True
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["intra_op_threads"]


@contextmanager
def intra_op_threads(n: int = 1) -> Iterator[None]:
    """At most ``n`` (>= 1) intra-op threads inside the block; the previous count is restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(n, before)))
    try:
        yield
    finally:
        torch.set_num_threads(before)
