"""Compatible components (paper 004): extractors and heads that can be recombined without fine-tuning.

The verbs and classes a user calls are exported here; the rest lives in the submodules:

* :mod:`.components` -- ``split_at``, ``recombine``, ``save_component`` / ``load_component`` (safetensors +
  JSON manifest with the :class:`Interface`), interface checks.
* :mod:`.aux` -- DCC (Eq. 1), RP and the ``SelfSupervisedTask`` protocol (Eq. 2), IIW (``make_networks``).
* :mod:`.schemes` -- joint and incremental training on the engine (``JointTraining`` is the
  :class:`tessera.train.Method`); :mod:`.methods` -- ``train_compatible``: tasks + a method name ->
  trained networks.
* :mod:`.measure` / :mod:`.bn` -- recombination matrix and accuracy, BN modes at evaluation
  (``EVAL_BN_MODES``, App. C.1), feature cross-correlation with the optimal permutation (App. C.2).
* :mod:`.apps` -- domain adaptation via RP, one head for several architectures, faster transfer (Sec. 5).
* :mod:`.models`, :mod:`.tasks`, :mod:`.plots`, :mod:`.demo` -- small CNNs and a ResNet-56, task pairs,
  heatmaps, the ``tessera demo`` showcase.

>>> import torch
>>> from tessera.compat import build, split_at, recombine
>>> net = build("resnet", width=4).eval()
>>> f, h = split_at(net, "stage2")
>>> x = torch.rand(3, 1, 16, 16)
>>> torch.equal(recombine(f, h)(x), net(x))
True
"""
from __future__ import annotations

from .apps import adapt_with_rp, finetune_curve, update_head
from .aux import DCC, RP, RotationTask, make_networks
from .components import Component, Interface, components, load_component, recombine, save_component, split_at
from .measure import TestSet, cross_correlation, evaluate, recombination_accuracy, recombination_matrix
from .methods import NetSpec, train_compatible
from .models import build
from .schemes import Member, train_incremental, train_joint
from .tasks import LabelledTask

__all__ = ["build", "components", "split_at", "recombine", "save_component", "load_component", "Component", "Interface",
           "DCC", "RP", "RotationTask", "make_networks", "Member", "train_joint", "train_incremental",
           "NetSpec", "train_compatible", "LabelledTask", "TestSet", "evaluate", "recombination_matrix",
           "recombination_accuracy", "cross_correlation", "adapt_with_rp", "update_head", "finetune_curve"]
