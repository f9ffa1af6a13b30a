"""Every reuse technique tessera ships, each registered with ONE call: its experiments
(``tessera reproduce``), benchmarks (``tessera bench``) and ``tessera demo`` section.

Targets are ``"module:function"`` strings, imported only when used, so the CLI starts fast and the
library never imports the applications. A new technique (its own package under ``tessera/``, see the
README's "Adding a technique") adds one :func:`register_technique` call at the end of this file.

>>> TECHNIQUES.get("muir").package
'tessera.hyper'
>>> "muir-synthetic" in EXPERIMENTS and "muir-overhead" in BENCHMARKS
True
>>> [t for t, _ in DEMO_SECTIONS][:1]
['template mixtures (paper 001/002)']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .registry import Registry

__all__ = ["Technique", "register_technique", "TECHNIQUES", "EXPERIMENTS", "BENCHMARKS", "DEMO_SECTIONS"]

EXPERIMENTS: Registry[Callable[..., dict[str, Any]]] = Registry("experiment")
BENCHMARKS: Registry[Callable[..., dict[str, Any]]] = Registry("benchmark")
DEMO_SECTIONS: list[tuple[str, str]] = []
"""``(title, "module:function")`` in the order ``tessera demo`` runs them."""


@dataclass(frozen=True)
class Technique:
    """A technique's package and what it registers (name -> ("module:function", help))."""

    name: str
    title: str
    package: str
    experiments: dict[str, tuple[str, str]] = field(default_factory=dict)
    benchmarks: dict[str, tuple[str, str]] = field(default_factory=dict)
    demo: str | None = None


TECHNIQUES: Registry[Technique] = Registry("technique")


def register_technique(name: str, *, title: str, package: str,
                       experiments: dict[str, tuple[str, str]] | None = None,
                       benchmarks: dict[str, tuple[str, str]] | None = None,
                       demo: str | None = None) -> Technique:
    """Register a technique and, with it, its experiments, benchmarks and demo section."""
    t = Technique(name, title, package, dict(experiments or {}), dict(benchmarks or {}), demo)
    TECHNIQUES.register(name, help=title)(t)
    for exp, (target, help_) in t.experiments.items():
        EXPERIMENTS.register_lazy(exp, target, help=help_)
    for b, (target, help_) in t.benchmarks.items():
        BENCHMARKS.register_lazy(b, target, help=help_)
    if demo is not None:
        DEMO_SECTIONS.append((title, demo))
    return t


_X = "tessera.experiments."
_B = "tessera.bench."

register_technique(
    "mixture", title="template mixtures (paper 001/002)", package="tessera.mixture",
    experiments={
        "signatures": (_X + "mixture_signatures:run",
                       "paper 002 Table 5 on Fashion-MNIST: cyclic/sequential/random/mixture signatures, K x L"),
        "mixture-multitask": (_X + "mixture_multitask:run",
                              "paper 002 Fig. 2b: 9 digit tasks (3 datasets x 3 augmentations), 9 templates vs shared "
                              "baseline"),
        "mixture-transfer": (_X + "mixture_transfer:run",
                             "paper 002 Table 2/9 analog: transfer to a held-out digit task by mixture weights"),
        "mixture-variants": (_X + "mixture_variants:run",
                             "paper 002 Table 8 + Table 10 analogs: 5 digit-like datasets co-trained by 8 variants; "
                             "transfer to 3 held-out ones"),
    },
    benchmarks={"mixture-overhead": (_B + "mixture:run", "template-mixture train step (K=4, 16) and exported "
                                                         "inference vs plain isometric net")},
    demo="tessera.mixture.demo:demo")

register_technique(
    "muir", title="MUiR hypermodules (paper 003)", package="tessera.hyper",
    experiments={
        "muir-synthetic": (_X + "muir_synthetic:run",
                           "paper 003 Table 2 + Fig. 2: MUiR on the 30 synthetic linear tasks (clean/noisy)"),
        "muir-crossmodal": (_X + "muir_crossmodal:run",
                            "paper 003 Table 3 analog: LeNet (Fashion-MNIST), LSTM LM (PTB), DeepBind (ENCODE) sharing "
                            "hypermodules"),
        "muir-context": (_X + "muir_tables:run_context",
                         "paper 003 Table 7 analog: MUiR across L+S+D with context size c in {0, 1, 2, 4, 8}"),
        "muir-methods": (_X + "muir_tables:run_methods",
                         "paper 003 Table 6 analog: STL, classical deep MTL, parallel adapters, MUiR (+ hierarchical "
                         "init)"),
        "muir-generic": (_X + "muir_tables:run_generic",
                         "paper 003 Table 4 analog: generic vs specific hypermodules, Mann-Whitney p-values"),
        "muir-compress": (_X + "muir_compress:run",
                          "paper 003 Table 5 analog: LSTM LM on PTB, MUiR's LSTM parameter reduction vs a shrunk "
                          "LSTM"),
        "muir-architectures": (_X + "muir_architectures:run",
                               "bring-your-own-model check: LeNet (Fashion-MNIST), LSTM LM and transformer LM (PTB) "
                               "share one hypermodule bank"),
    },
    benchmarks={"muir-overhead": (_B + "muir:run", "MUiR (lambda=1, all locations soft-merged) vs plain LeNet / "
                                                   "LSTM LM / DeepBind training steps"),
                "muir-many-tasks": (_B + "muir_many:run", "one MUiR generation of many same-architecture tasks "
                                                          "(Table 2's 30-task universes, 30 digit CNNs): public API "
                                                          "(vectorized) vs a hand-written batched loop")},
    demo="tessera.hyper.demo:demo")

register_technique(
    "own-models", title="bring your own model: a CNN and a transformer share one hypermodule bank (paper 003)",
    package="tessera.hyper", demo="tessera.hyper.demo:own_models")

register_technique(
    "compat", title="compatible components (paper 004)", package="tessera.compat",
    experiments={
        "compat-recombination": (_X + "compat_recombination:run",
                                 "paper 004 Fig. 2 analog: recombination accuracy of IIW/RP/DCC combinations, "
                                 "MNIST<->USPS, same-dataset control, incremental both orders"),
        "compat-controls": (_X + "compat_controls:run",
                            "paper 004 Sec. 4 / App. C controls: split position, number of DCC classes, pretrained "
                            "init, RP variants, norms, no common classes"),
        "compat-uda": (_X + "compat_uda:run",
                       "paper 004 Table 1 analog: unsupervised domain adaptation MNIST<->USPS through a frozen "
                       "rotation head"),
        "compat-heads": (_X + "compat_heads:run",
                         "paper 004 Fig. 3 analog: one head shared by ResNet/wide ResNet/MobileNet-style extractors, "
                         "5->10 classes"),
        "compat-transfer": (_X + "compat_transfer:run",
                            "paper 004 Fig. 4 analog: faster transfer MNIST->USPS/Fashion by recombining compatible "
                            "components"),
    },
    demo="tessera.compat.demo:demo")

register_technique(
    "adapt", title="domain adaptation by mixture weights (paper 002 §4.4)", package="tessera.adapt",
    experiments={
        "da-digits": (_X + "da_digits:run",
                      "paper 002 Table 3/12 analog: MNIST + corrupted MNIST -> USPS by target mixture weights only"),
        "da-office": (_X + "da_office:run",
                      "paper 002 §4.4/App. D setup on Office-Caltech10 SURF features (paper: images): "
                      "amazon/caltech/dslr -> webcam"),
    },
    demo="tessera.adapt.demo:demo")

register_technique(
    "isometric", title="isometric networks (paper 002 App. A)", package="tessera.nn",
    benchmarks={"isometric-throughput": (_B + "isometric:run", "IsometricNet vs the same architecture as plain "
                                                               "nn.Sequential: training step / samples per s")})
