"""Compatible components (paper 004): extractors and heads that can be recombined without fine-tuning.

* :mod:`.components` -- ``split_at``, ``recombine``, ``save_component`` / ``load_component`` (safetensors +
  JSON manifest with the interface), interface checks.
* :mod:`.aux` -- DCC (Eq. 1), RP and the ``SelfSupervisedTask`` protocol (Eq. 2), IIW helpers.
* :mod:`.schemes` -- joint and incremental training as small functions.
* :mod:`.measure` / :mod:`.bn` -- recombination matrix and accuracy, BN modes (App. C.1), feature
  cross-correlation with the optimal permutation (App. C.2). :mod:`.plots` -- heatmap PNG.
* :mod:`.apps` -- domain adaptation via RP, one head for several architectures, faster transfer (Sec. 5).
* :mod:`.models`, :mod:`.tasks`, :mod:`.recipes`, :mod:`.demo` -- small CNNs, task pairs, one-call setups.

>>> import torch
>>> from tessera.compat import build, split_at, recombine
>>> net = build("resnet", width=4).eval()
>>> f, h = split_at(net, "stage2")
>>> x = torch.rand(3, 1, 16, 16)
>>> torch.equal(recombine(f, h)(x), net(x))
True
"""
from __future__ import annotations

from .aux import DCC, RP, AuxObjective, RotationTask, SelfSupervisedTask, common_classes, identical_init, make_networks
from .bn import BN_MODES, batch_stats, frozen, recompute_stats
from .components import (Component, Interface, components, feature_shape, load_component, read_manifest, recombine,
                         save_component, split_at)
from .measure import (TestSet, cross_correlation, evaluate, features, own_accuracy, recombination_accuracy,
                      recombination_matrix)
from .models import NETS, build
from .schemes import Member, TrainCfg, train_incremental, train_joint

__all__ = ["DCC", "RP", "AuxObjective", "RotationTask", "SelfSupervisedTask", "common_classes", "identical_init",
           "make_networks", "BN_MODES", "batch_stats", "frozen", "recompute_stats", "Component", "Interface",
           "components", "feature_shape", "load_component", "read_manifest", "recombine", "save_component",
           "split_at", "TestSet", "cross_correlation", "evaluate", "features", "own_accuracy",
           "recombination_accuracy", "recombination_matrix", "NETS", "build", "Member", "TrainCfg",
           "train_incremental", "train_joint"]
