"""Lazy registrations of every experiment and benchmark (imported by the CLI).

Entries point at ``module:function``; nothing heavy is imported until an entry is run.
"""
from __future__ import annotations

import importlib.util

from .bench import BENCHMARKS
from .experiments import EXPERIMENTS

_EXPERIMENTS = {
    "muir-synthetic": ("tessera.experiments.muir_synthetic:run", "MUiR Table 2 on the paper's synthetic multi-task data"),
    "muir-crossmodal": ("tessera.experiments.muir_crossmodal:run", "MUiR Table 3 analog: CNN (MNIST), LSTM (PTB), 1-D CNN (DeepBind)"),
    "signatures": ("tessera.experiments.mixture_signatures:run", "Table 5 analog on Fashion-MNIST: template signatures"),
    "mixture-multitask": ("tessera.experiments.mixture_multitask:run", "Fig. 2b: 9 digit tasks sharing 9 templates"),
    "mixture-transfer": ("tessera.experiments.mixture_transfer:run", "Table 2/9 analog: transfer by mixture weights only"),
    "da-digits": ("tessera.experiments.da_digits:run", "Table 3 analog: multi-source DA to USPS by mixture weights"),
    "da-office": ("tessera.experiments.da_office:run", "Office-Caltech10 SURF: DA by mixture weights"),
    "compat-recombination": ("tessera.experiments.compat_recombination:run", "paper 004 Fig. 2 analog: MNIST <-> USPS"),
    "compat-uda": ("tessera.experiments.compat_uda:run", "paper 004 §5.1: UDA via the rotation head"),
    "compat-heads": ("tessera.experiments.compat_heads:run", "paper 004 §5.2: one head for several architectures"),
    "compat-transfer": ("tessera.experiments.compat_transfer:run", "paper 004 §5.3: faster transfer"),
}
_BENCHMARKS = {
    "isometric-throughput": ("tessera.bench.isometric:run", "IsometricNet vs plain PyTorch: training samples/s"),
    "muir-overhead": ("tessera.bench.muir:run", "MUiR-reparameterized models vs plain: training step"),
    "mixture-overhead": ("tessera.bench.mixture:run", "template-mixture network vs plain isometric: step time"),
}


def _available(target: str) -> bool:
    mod = target.split(":")[0]
    try:
        return importlib.util.find_spec(mod) is not None
    except ModuleNotFoundError:
        return False


for _name, (_target, _help) in _EXPERIMENTS.items():
    if _name not in EXPERIMENTS and _available(_target):
        EXPERIMENTS.register_lazy(_name, _target, help=_help)
for _name, (_target, _help) in _BENCHMARKS.items():
    if _name not in BENCHMARKS and _available(_target):
        BENCHMARKS.register_lazy(_name, _target, help=_help)
