"""``tessera bench NAME``: side-by-side timings of tessera against the plain-PyTorch equivalent.

Each benchmark is ``run(opts: RunOptions) -> dict`` producing rows with ``baseline_s``,
``candidate_s`` and ``ratio`` = candidate / baseline, measured in the same process.
"""
from __future__ import annotations

from ..experiments import RunOptions
from ..techniques import BENCHMARKS

__all__ = ["RunOptions", "BENCHMARKS"]

"""Registered in :mod:`tessera.techniques` (one ``register_technique`` call per technique)."""
