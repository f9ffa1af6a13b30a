"""Residual blocks of isometric networks: channels in == channels out, same resolution.

Every block is built from plain ``nn.Conv2d`` / ``nn.BatchNorm2d`` submodules with stable names
(``conv_pw``, ``bn1``, ``conv_dw``, ``bn2``, ``se.conv_reduce``, ``se.conv_expand``, ``conv_pwl``,
``bn3``), and every forward calls those modules, so code that rewrites ``<name>.weight`` (template
mixtures, hypermodules) changes the computation. Nothing is fused or cached.

Blocks share one constructor contract so that they can be swapped by name through :data:`BLOCKS`::

    block_cls(channels, *, context_chans=0, act_layer=..., norm_layer=..., drop_path=0., **kw)
    block(x, context=None)   # (N, C, H, W) [, (N, Cc, H, W)] -> (N, C, H, W)

``context`` (with ``context_chans > 0``) is an extra input concatenated to ``x`` before the first
convolution: the paper's (002, App. B) blocks that also receive the input adapter's output.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import ShapeError
from ..registry import Registry

__all__ = ["BLOCKS", "InvertedResidual", "BasicResidual", "SqueezeExcite", "DropPath",
           "make_divisible", "create_act", "global_avg_pool"]

LayerFactory = Callable[..., nn.Module]

BLOCKS: Registry = Registry("block")
"""Block factories by name: ``BLOCKS.get("inverted_residual")(channels=24)``."""


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going more than 10% below it.

    >>> make_divisible(40 * 0.6), make_divisible(36, 8), make_divisible(3)
    (24, 40, 8)
    """
    min_value = divisor if min_value is None else min_value
    out = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * v else out


# Activations whose in-place autograd needs only the result (no hidden copy of the input).
# In-place Hardswish / Hardsigmoid / SiLU make autograd clone their input, which is slower.
_INPLACE_CHEAP = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU)


def create_act(act_layer: LayerFactory, inplace: bool | None = None) -> nn.Module:
    """Instantiate ``act_layer``; ``inplace=None`` picks in place where autograd makes it free.

    >>> create_act(nn.ReLU6), create_act(nn.Hardswish)
    (ReLU6(inplace=True), Hardswish())
    """
    if inplace is None:
        inplace = isinstance(act_layer, type) and issubclass(act_layer, _INPLACE_CHEAP)
    if not inplace:
        return act_layer()
    try:
        return act_layer(inplace=True)
    except TypeError:
        return act_layer()


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, 1, 1) average, as ``AdaptiveAvgPool2d(1)``, dividing after the sum.

    Dividing the small pooled tensor (not ``x.mean``) lets autograd send the gradient back as a
    broadcast view instead of dividing a full (N, C, H, W) tensor: one pass less in backward.
    """
    return x.sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3])


def _check_channels(name: str, channels: int) -> None:
    if not isinstance(channels, int) or channels < 1:
        raise ShapeError(f"{name} must be a positive int, got {channels!r}; pass e.g. channels=24")


class DropPath(nn.Module):
    """Stochastic depth on the residual branch (per sample); identity when ``p == 0`` or in eval."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ShapeError(f"drop_path must be in [0, 1), got {p}; use 0 to disable")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)  # (N, 1, 1, 1)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excite: global mean -> 1x1 reduce (bias) -> act -> 1x1 expand (bias) -> gate.

    The gate is a hard sigmoid (MobileNetV3); the pooling is :func:`global_avg_pool`.

    >>> se = SqueezeExcite(144, 36)
    >>> se(torch.randn(2, 144, 7, 7)).shape
    torch.Size([2, 144, 7, 7])
    """

    def __init__(self, channels: int, reduced: int, act_layer: LayerFactory = nn.ReLU,
                 gate_layer: LayerFactory = nn.Hardsigmoid):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = create_act(act_layer)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = create_act(gate_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = global_avg_pool(x)                              # (N, E, H, W) -> (N, E, 1, 1)
        s = self.act(self.conv_reduce(s))                   # (N, E, 1, 1) -> (N, R, 1, 1)
        s = self.gate(self.conv_expand(s))                  # (N, R, 1, 1) -> (N, E, 1, 1)
        return x * s                                        # broadcast over H, W


@BLOCKS.register("inverted_residual", help="MobileNetV3 block: 1x1 expand, dw kxk, SE, 1x1 project")
class InvertedResidual(nn.Module):
    """MobileNetV3 / isometric inverted residual block (paper 002, §4.1 and App. A.1).

    1x1 expansion conv + BN + act, depthwise kxk conv + BN + act, squeeze-excite (reduction
    ``se_ratio`` of the expanded width, not rounded, hard-sigmoid gate), 1x1 projection conv + BN,
    residual add. ``act_layer`` defaults to hard-swish and the SE uses ReLU, as MobileNetV3 does in
    its wider layers (the paper builds its blocks on MobileNetV3); pass ``act_layer=nn.ReLU6`` for
    MobileNetV2-style blocks. With ``channels=24`` the block has 19380 parameters (paper, Table 7:
    ~20000), 8832 without SE (~9000); with ``channels=40``: 51500 (~52000) and 22400 (~22000).

    >>> blk = InvertedResidual(24)
    >>> blk(torch.randn(2, 24, 14, 14)).shape
    torch.Size([2, 24, 14, 14])
    >>> sum(p.numel() for p in blk.parameters())
    19380
    """

    def __init__(self, channels: int, expansion: int = 6, kernel_size: int = 3,
                 se_ratio: float | None = 0.25, *, context_chans: int = 0,
                 act_layer: LayerFactory = nn.Hardswish, se_act_layer: LayerFactory = nn.ReLU,
                 norm_layer: LayerFactory = nn.BatchNorm2d, drop_path: float = 0.0):
        super().__init__()
        _check_channels("channels", channels)
        if kernel_size % 2 != 1:
            raise ShapeError(f"kernel_size must be odd to keep the resolution, got {kernel_size}")
        if expansion < 1:
            raise ShapeError(f"expansion must be >= 1, got {expansion}")
        mid = channels * expansion
        self.channels, self.context_chans = channels, context_chans
        self.conv_pw = nn.Conv2d(channels + context_chans, mid, 1, bias=False)
        self.bn1 = norm_layer(mid)
        self.act1 = create_act(act_layer)
        self.conv_dw = nn.Conv2d(mid, mid, kernel_size, padding=kernel_size // 2, groups=mid, bias=False)
        self.bn2 = norm_layer(mid)
        self.act2 = create_act(act_layer)
        self.se = (SqueezeExcite(mid, max(1, round(mid * se_ratio)), se_act_layer)
                   if se_ratio else nn.Identity())
        self.conv_pwl = nn.Conv2d(mid, channels, 1, bias=False)
        self.bn3 = norm_layer(channels)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = x if context is None else torch.cat([x, context], 1)  # (N, C [+ Cc], H, W)
        h = self.act1(self.bn1(self.conv_pw(h)))            # (N, C, H, W) -> (N, 6C, H, W)
        h = self.act2(self.bn2(self.conv_dw(h)))            # depthwise kxk, same shape
        h = self.se(h)                                      # channel gate, same shape
        h = self.bn3(self.conv_pwl(h))                      # (N, 6C, H, W) -> (N, C, H, W)
        return self.drop_path(h) + x                        # residual


@BLOCKS.register("inverted_residual_nose", help="inverted residual block without squeeze-excite")
def inverted_residual_nose(channels: int, **kwargs) -> InvertedResidual:
    """:class:`InvertedResidual` with ``se_ratio=None`` (8832 parameters at 24 channels)."""
    kwargs["se_ratio"] = None
    return InvertedResidual(channels, **kwargs)


@BLOCKS.register("basic_residual", help="two 3x3 conv + BN, residual add (ResNet basic block)")
class BasicResidual(nn.Module):
    """ResNet basic block at constant width: 3x3 conv + BN + act, 3x3 conv + BN, residual add.

    >>> BasicResidual(16)(torch.randn(1, 16, 8, 8)).shape
    torch.Size([1, 16, 8, 8])
    """

    def __init__(self, channels: int, kernel_size: int = 3, *, context_chans: int = 0,
                 act_layer: LayerFactory = nn.ReLU, norm_layer: LayerFactory = nn.BatchNorm2d,
                 drop_path: float = 0.0):
        super().__init__()
        _check_channels("channels", channels)
        if kernel_size % 2 != 1:
            raise ShapeError(f"kernel_size must be odd to keep the resolution, got {kernel_size}")
        pad = kernel_size // 2
        self.channels, self.context_chans = channels, context_chans
        self.conv1 = nn.Conv2d(channels + context_chans, channels, kernel_size, padding=pad, bias=False)
        self.bn1 = norm_layer(channels)
        self.act1 = create_act(act_layer)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=False)
        self.bn2 = norm_layer(channels)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act2 = create_act(act_layer)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = x if context is None else torch.cat([x, context], 1)  # (N, C [+ Cc], H, W)
        h = self.act1(self.bn1(self.conv1(h)))              # (N, C, H, W)
        h = self.bn2(self.conv2(h))                         # (N, C, H, W)
        return self.act2(self.drop_path(h) + x)


