"""Multi-source unsupervised domain adaptation by mixture weights (paper 002, §4.4 and App. D).

Train a compositional network (one table of mixture logits per domain over a shared template bank)
on labelled sources, copy a source's logits to the unlabelled target, and adapt only those L x K
numbers with ADDA or moment matching. Every routine runs on the one engine
(:class:`tessera.train.Trainer`); :class:`ADDA` and :class:`MomentMatching` are its methods.

>>> import torch
>>> from tessera.adapt import CompositionalDA, Domain, train_sources, adapt_adda, accuracy
>>> g = torch.Generator().manual_seed(0)
>>> src = Domain("src", torch.rand(32, 1, 8, 8, generator=g), torch.arange(32) % 2)
>>> tgt = Domain("tgt", torch.rand(32, 1, 8, 8, generator=g) * 0.5)         # unlabelled
>>> m = CompositionalDA.build(["src"], 2, num_templates=2, depth=2, channels=8, patch=4, head_channels=(8, 8))
>>> _ = train_sources(m, [src], steps=2, batch_size=8)
>>> m.add_target("tgt", from_domain="src")                                  # copy a source's mixture logits
>>> hist = adapt_adda(m, [src], tgt, steps=2, batch_size=8, pool=16)       # moves m.net.mixture["tgt"] only
>>> sorted(hist[0]), list(m.target_parameters("tgt"))
(['disc_acc', 'disc_loss', 'target_loss'], ['net.mixture.tgt'])

Submodules hold the rest: :mod:`.init` (Table 9 target initializations), :mod:`.adversarial` and
:mod:`.moments` (the losses), :mod:`.isolation` (bit-identical checks), :mod:`.models`
(``ResidualMLP``, ``mlp_parts`` for vector inputs), :mod:`.domains` (``check_domains``).
"""
from .adversarial import ADDA
from .domains import Domain, DomainError
from .models import CompositionalDA, DAModel, IsometricDA
from .moments import MomentMatching
from .training import accuracy, adapt_adda, adapt_m3sda, finetune_target, reestimate_stats, train_sources

__all__ = ["Domain", "DomainError", "DAModel", "CompositionalDA", "IsometricDA", "train_sources", "adapt_adda",
           "adapt_m3sda", "finetune_target", "reestimate_stats", "accuracy", "ADDA", "MomentMatching"]
