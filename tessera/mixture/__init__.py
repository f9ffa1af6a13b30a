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

__all__ = ["MixtureNet", "ModelMixture", "TemplateBank", "export", "max_difference", "SIGNATURES",
           "make_signature", "extract_signature", "freeze", "mixture_clustering", "mixture_entropy", "interpolate",
           "from_source", "learn_interpolation", "train_tasks", "TaskSplit", "accuracy", "multitask_model",
           "layer_sharing", "plot_mixture_weights"]
"""The public surface; the other names imported above are for tessera's own packages (import them from
their modules; they may change)."""
