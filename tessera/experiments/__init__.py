"""``tessera reproduce NAME``: experiments that reproduce the papers' findings on real data.

Each experiment is a function ``run(opts: RunOptions) -> dict`` returning the result JSON built with
:class:`tessera.results.Report` (and writing it to ``opts.json`` when given). Register new ones below
with ``EXPERIMENTS.register_lazy(name, "module:function", help=...)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..registry import Registry

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


EXPERIMENTS: Registry = Registry("experiment")
EXPERIMENTS.register_lazy("muir-synthetic", "tessera.experiments.muir_synthetic:run",
                          help="paper 003 Table 2 + Fig. 2: MUiR on the 30 synthetic linear tasks (clean/noisy)")
EXPERIMENTS.register_lazy("muir-crossmodal", "tessera.experiments.muir_crossmodal:run",
                          help="paper 003 Table 3 analog: LeNet (Fashion-MNIST), LSTM LM (PTB), DeepBind (ENCODE) sharing hypermodules")
EXPERIMENTS.register_lazy("muir-context", "tessera.experiments.muir_tables:run_context",
                          help="paper 003 Table 7 analog: MUiR across L+S+D with context size c in {0, 1, 2, 4, 8}")
EXPERIMENTS.register_lazy("muir-methods", "tessera.experiments.muir_tables:run_methods",
                          help="paper 003 Table 6 analog: STL, classical deep MTL, parallel adapters, MUiR (+ hierarchical init)")
EXPERIMENTS.register_lazy("muir-generic", "tessera.experiments.muir_tables:run_generic",
                          help="paper 003 Table 4 analog: generic vs specific hypermodules, Mann-Whitney p-values")
EXPERIMENTS.register_lazy("muir-compress", "tessera.experiments.muir_compress:run",
                          help="paper 003 Table 5 analog: LSTM LM on PTB, MUiR's LSTM parameter reduction vs a shrunk LSTM")
EXPERIMENTS.register_lazy("signatures", "tessera.experiments.mixture_signatures:run",
                          help="paper 002 Table 5 on Fashion-MNIST: cyclic/sequential/random/mixture signatures, K x L")
EXPERIMENTS.register_lazy("mixture-multitask", "tessera.experiments.mixture_multitask:run",
                          help="paper 002 Fig. 2b: 9 digit tasks (3 datasets x 3 augmentations), 9 templates vs shared baseline")
EXPERIMENTS.register_lazy("mixture-transfer", "tessera.experiments.mixture_transfer:run",
                          help="paper 002 Table 2/9 analog: transfer to a held-out digit task by mixture weights only")
EXPERIMENTS.register_lazy("compat-recombination", "tessera.experiments.compat_recombination:run",
                          help="paper 004 Fig. 2 analog: recombination accuracy of IIW/RP/DCC combinations, MNIST<->USPS (+ Fashion<->KMNIST)")
EXPERIMENTS.register_lazy("compat-uda", "tessera.experiments.compat_uda:run",
                          help="paper 004 Table 1 analog: unsupervised domain adaptation MNIST<->USPS through a frozen rotation head")
EXPERIMENTS.register_lazy("compat-heads", "tessera.experiments.compat_heads:run",
                          help="paper 004 Fig. 3 analog: one head shared by ResNet/wide ResNet/MobileNet-style extractors, 5->10 classes")
EXPERIMENTS.register_lazy("compat-transfer", "tessera.experiments.compat_transfer:run",
                          help="paper 004 Fig. 4 analog: faster transfer MNIST->USPS/Fashion by recombining compatible components")
EXPERIMENTS.register_lazy("da-digits", "tessera.experiments.da_digits:run",
                          help="paper 002 Table 3/12 analog: MNIST + corrupted MNIST -> USPS by target mixture weights only")
EXPERIMENTS.register_lazy("da-office", "tessera.experiments.da_office:run",
                          help="paper 002 §4.4/App. D setup on Office-Caltech10 SURF features (paper: images): amazon/caltech/dslr -> webcam")
