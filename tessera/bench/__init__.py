"""``tessera bench NAME``: side-by-side timings of tessera against the plain-PyTorch equivalent.

Each benchmark is ``run(opts: RunOptions) -> dict`` producing rows with ``baseline_s``,
``candidate_s`` and ``ratio`` = candidate / baseline, measured in the same process.
"""
from __future__ import annotations

from ..experiments import RunOptions
from ..registry import Registry

__all__ = ["RunOptions", "BENCHMARKS"]

BENCHMARKS: Registry = Registry("benchmark")
BENCHMARKS.register_lazy("mixture-overhead", "tessera.bench.mixture:run",
                         help="template-mixture train step (K=4, 16) and collapsed inference vs plain isometric net")
BENCHMARKS.register_lazy("isometric-throughput", "tessera.bench.isometric:run",
                         help="IsometricNet vs the same architecture as plain nn.Sequential: training step / samples per s")
BENCHMARKS.register_lazy("muir-overhead", "tessera.bench.muir:run",
                         help="MUiR (lambda=1, all locations soft-merged) vs plain LeNet / LSTM LM / DeepBind training steps")
