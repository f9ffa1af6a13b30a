"""Multi-source unsupervised domain adaptation by mixture weights (paper 002, §4.4 and App. D).

Losses and steps that work on any feature function (:mod:`.adversarial`, :mod:`.moments`), the
parameter selection that keeps everything but the target's own part bit-identical (:mod:`.select`),
two model wrappers — compositional (per-domain mixture logits over one template bank) and plain
isometric (per-target input adapter) — (:mod:`.models`), loops (:mod:`.loops`), target
initializations (:mod:`.init`, Table 9) and the per-seed protocol (:mod:`.baselines`).

>>> import torch
>>> from tessera.adapt import Domain, CompositionalDA, adapt_adda, count_params
>>> g = torch.Generator().manual_seed(0)
>>> src = Domain("src", torch.rand(32, 1, 8, 8, generator=g), torch.arange(32) % 2)
>>> tgt = Domain("tgt", torch.rand(32, 1, 8, 8, generator=g) * 0.5)
>>> m = CompositionalDA.build(["src"], 2, num_templates=2, depth=2, channels=8, patch=4, head_channels=(8, 8))
>>> m.add_target("tgt", from_domain="src")
>>> hist = adapt_adda(m, [Domain("src", src.x, src.y)], tgt, steps=2, batch_size=8, pool=16)
>>> sorted(hist[0]), count_params(m.target_parameters("tgt"))
(['disc_acc', 'disc_loss', 'target_loss'], 4)
"""
from .adversarial import Discriminator, adda_step, adversarial_target_loss, discriminator_loss
from .baselines import ROWS, AdaptConfig, run_compositional, run_isometric
from .domains import BatchStream, Domain, DomainError, check_domains, require_labeled, require_unlabeled
from .init import accuracy_init, interpolate, learned_init, random_init, rank_sources
from .loops import (accuracy, adapt_adda, adapt_m3sda, feature_pool, finetune_target, predict, reestimate_stats,
                    train_sources)
from .models import CompositionalDA, DAModel, IsometricDA, ResidualMLP, mlp_parts
from .moments import classifier_discrepancy, m3sda_step, moment_distance
from .select import changed, count_params, named_subset, snapshot, step_only

__all__ = [
    "Domain", "DomainError", "BatchStream", "check_domains", "require_labeled", "require_unlabeled",
    "Discriminator", "discriminator_loss", "adversarial_target_loss", "adda_step",
    "moment_distance", "classifier_discrepancy", "m3sda_step",
    "DAModel", "CompositionalDA", "IsometricDA", "ResidualMLP", "mlp_parts",
    "train_sources", "accuracy", "predict", "feature_pool", "adapt_adda", "adapt_m3sda", "finetune_target",
    "reestimate_stats", "interpolate", "rank_sources", "random_init", "accuracy_init", "learned_init",
    "AdaptConfig", "run_compositional", "run_isometric", "ROWS",
    "step_only", "count_params", "snapshot", "changed", "named_subset",
]
