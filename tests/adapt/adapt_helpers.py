"""Tiny generated domains and models for the adaptation tests (everything runs in a few seconds)."""
from __future__ import annotations

import torch

from tessera.adapt import CompositionalDA, Domain, IsometricDA


def make_domain(name: str, n: int = 48, classes: int = 3, shift: float = 0.0, labeled: bool = True,
                seed: int = 0, size: int = 8) -> Domain:
    """Class c lights up a 2-row band at rows 2c..2c+1; ``shift`` brightens and blurs the domain."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, 1, size, size, generator=g) * 0.2
    for c in range(classes):
        x[y == c, :, 2 * c:2 * c + 2, :] += 0.8
    x = (x * (1 - shift) + shift * x.mean((2, 3), keepdim=True) + 0.5 * shift).clamp(0, 1)
    return Domain(name, x, y if labeled else None)


def tiny_comp(sources=("a", "b"), classes: int = 3, seed: int = 0) -> CompositionalDA:
    torch.manual_seed(seed)
    return CompositionalDA.build(list(sources), classes, num_templates=2, depth=3, channels=8, patch=4,
                                 head_channels=(16, 16), seed=seed)


def tiny_iso(sources=("a", "b"), classes: int = 3, seed: int = 0) -> IsometricDA:
    torch.manual_seed(seed)
    return IsometricDA.build(list(sources), classes, depth=2, channels=8, patch=4, head_channels=(16, 16))
