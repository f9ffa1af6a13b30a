"""``tessera reproduce NAME``: experiments that reproduce the papers' findings on real data.

Each experiment is a function ``run(opts: RunOptions) -> dict`` returning the result JSON built with
:class:`tessera.results.Report` (and writing it to ``opts.json`` when given). Register new ones
in :mod:`tessera.techniques` (the technique's one ``register_technique`` call).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..techniques import EXPERIMENTS as _EXPERIMENTS

__all__ = ["RunOptions", "EXPERIMENTS"]


@dataclass
class RunOptions:
    """Options every experiment and benchmark accepts (from the CLI)."""

    json: Path | None = None          # where to write the result JSON
    out: Path = Path("runs/reproduce")  # folder for plots and per-run artifacts
    seeds: int | None = None          # None: the experiment's default
    data_root: Path | None = None     # None: $TESSERA_DATA or the user cache dir
    budget: str = "default"           # "default" | "quick" (smoke-sized) | "paper" (where feasible)
    device: str = "auto"              # "auto" | "cpu" | "cuda" | "mps"
    resume: bool = True               # reuse finished per-seed results found under ``out``

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.json = Path(self.json) if self.json is not None else None
        self.data_root = Path(self.data_root) if self.data_root is not None else None


EXPERIMENTS = _EXPERIMENTS
"""Registered in :mod:`tessera.techniques` (one ``register_technique`` call per technique)."""
