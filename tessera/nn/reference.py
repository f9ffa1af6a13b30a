"""The isometric network written as plainly as PyTorch allows, for equivalence tests and benchmarks.

No tessera code is used to build it: ``nn.Sequential`` of standard modules, ``AdaptiveAvgPool2d``,
in-place activations as torchvision writes them, and two tiny modules for the residual and the
squeeze-excite product (which ``nn.Sequential`` cannot express). :func:`load_from_tessera` copies an
:class:`~tessera.nn.IsometricNet`'s state dict into it by position.

>>> import torch
>>> from tessera.nn import create_model
>>> net = create_model("isometric_small", depth=2).eval()
>>> ref = load_from_tessera(plain_isometric(10, depth=2), net).eval()
>>> x = torch.randn(2, 1, 28, 28)
>>> torch.allclose(net(x), ref(x), atol=1e-6)
True
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["plain_isometric", "load_from_tessera", "PlainResidual", "PlainSE"]


class PlainSE(nn.Module):
    """x * hardsigmoid(expand(relu(reduce(avgpool(x)))))."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale(x)


class PlainResidual(nn.Module):
    """x + body(x)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def plain_block(channels: int, expansion: int = 6, kernel_size: int = 3, se: bool = True,
                act: Callable[..., nn.Module] = nn.Hardswish) -> nn.Module:
    mid = channels * expansion
    reduced = max(1, round(mid * 0.25))
    return PlainResidual(nn.Sequential(
        nn.Conv2d(channels, mid, 1, bias=False), nn.BatchNorm2d(mid), act(inplace=True),
        nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=False),
        nn.BatchNorm2d(mid), act(inplace=True),
        *([PlainSE(mid, reduced)] if se else []),
        nn.Conv2d(mid, channels, 1, bias=False), nn.BatchNorm2d(channels),
    ))


def plain_isometric(num_classes: int = 10, in_chans: int = 1, channels: int = 24, depth: int = 16,
                    patch: int = 2, head_channels: tuple[int, int] = (128, 256), dropout: float = 0.2,
                    se: bool = True, act: Callable[..., nn.Module] = nn.Hardswish) -> nn.Sequential:
    """The default ``IsometricNet`` (inverted-residual blocks, ``block_input_mode="none"``)."""
    c1, c2 = head_channels
    return nn.Sequential(
        nn.Conv2d(in_chans, channels, patch, stride=patch, bias=False), nn.BatchNorm2d(channels),
        act(inplace=True),
        *[plain_block(channels, se=se, act=act) for _ in range(depth)],
        nn.Conv2d(channels, c1, 1), act(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Conv2d(c1, c2, 1), act(inplace=True),
        nn.Flatten(1),
        nn.Dropout(dropout),
        nn.Linear(c2, num_classes),
    )


def load_from_tessera(plain: nn.Module, tessera_model: nn.Module) -> nn.Module:
    """Copy ``tessera_model``'s parameters and buffers into ``plain`` by position; returns ``plain``.

    Both state dicts list the same tensors in the same order (module registration order), so the
    mapping is positional; shapes are checked for every pair.
    """
    src, dst = tessera_model.state_dict(), plain.state_dict()
    if len(src) != len(dst):
        raise ValueError(f"state dicts differ in length: {len(src)} vs {len(dst)}")
    new = {}
    for (ks, vs), (kd, vd) in zip(src.items(), dst.items()):
        if vs.shape != vd.shape:
            raise ValueError(f"{ks} {tuple(vs.shape)} does not fit {kd} {tuple(vd.shape)}")
        new[kd] = vs.clone()
    plain.load_state_dict(new)
    return plain
