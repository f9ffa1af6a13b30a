"""Network building blocks: isometric networks and their residual blocks.

>>> import torch
>>> from tessera.nn import create_model, MODELS, BLOCKS
>>> MODELS.names(), BLOCKS.names()
(['isometric_large', 'isometric_small'], ['basic_residual', 'inverted_residual', 'inverted_residual_nose'])
>>> create_model("isometric_small", depth=2)(torch.randn(1, 1, 28, 28)).shape
torch.Size([1, 10])
"""
from __future__ import annotations

from .blocks import BLOCKS, BasicResidual, InvertedResidual, SqueezeExcite, make_divisible
from .isometric import MODELS, IsometricNet, create_model, param_table

__all__ = ["InvertedResidual", "BasicResidual", "SqueezeExcite", "IsometricNet", "BLOCKS", "MODELS",
           "create_model", "param_table", "make_divisible"]
