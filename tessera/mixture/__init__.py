"""Template-mixture (compositional) networks, paper 002: layers mixed from a shared template bank.

>>> import torch
>>> from tessera.mixture import MixtureNet, export
>>> net = MixtureNet.from_isometric({"digits": 10}, num_templates=4, depth=8, channels=16,
...                                 head_channels=(32, 64), patch=4)
>>> net(torch.randn(2, 1, 16, 16)).shape
torch.Size([2, 10])
"""
from .exported import ExportedNet, export, max_difference
from .multitask import VARIANTS, multitask_model
from .network import BLOCK_INPUT_MODES, BN_MODES, MixtureNet, init_isometric_block
from .over import ModelMixture, select_blocks
from .organization import band_means, layer_sharing, signature_drift
from .plots import plot_mixture_weights
from .regularizers import clustering, entropy, mixture_clustering, mixture_entropy
from .signatures import (SIGNATURES, cyclic, diag, extract_signature, freeze, init_logits, make_signature,
                         one_hot_logits, random_signature, sequential, set_signature)
from .templates import ParamSpec, TemplateBank
from .training import TaskSplit, accuracy, evaluate_split, learn_interpolation, train_tasks
from .transfer import (accuracy_coefficients, count_parameters, from_source, interpolate, source_accuracies,
                       trainable_parameters)

__all__ = ["MixtureNet", "ModelMixture", "select_blocks", "TemplateBank", "ParamSpec", "BN_MODES", "BLOCK_INPUT_MODES",
           "init_isometric_block", "SIGNATURES", "sequential", "cyclic", "diag", "random_signature",
           "make_signature", "one_hot_logits", "init_logits", "extract_signature", "set_signature", "freeze",
           "entropy", "clustering", "mixture_entropy", "mixture_clustering", "ExportedNet", "export",
           "max_difference", "from_source", "interpolate", "accuracy_coefficients", "source_accuracies",
           "learn_interpolation", "trainable_parameters", "count_parameters", "plot_mixture_weights",
           "VARIANTS", "multitask_model", "TaskSplit", "train_tasks", "accuracy", "evaluate_split",
           "layer_sharing", "signature_drift", "band_means"]
