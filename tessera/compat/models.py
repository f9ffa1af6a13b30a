"""Small CNNs for 28x28 (or any HxW) digit images, built as ``nn.Sequential`` with named stages.

Every network is ``stem -> stage1 -> stage2 -> [l2] -> stage3 -> pool -> fc``; the attribute
``split_point`` names the module after which it splits into a feature extractor and a head (after the
second stage, as in the paper's ResNet-56 split). ``resnet56`` is the paper's shape (He et al.'s CIFAR
ResNet: 16/32/64 channels, 9 basic blocks per stage, stride-1 first stage; split after stage 2 at 32
channels and half the input resolution, 32 @ 16x16 for 32x32 images); the small ``resnet`` (1 block
per stage, widths w / 2w / 4w after a stride-2 first stage) is the cheap default of the experiments. Norm layers are chosen by name (App. C.1):
``"bn"`` BatchNorm, ``"ln"`` LayerNorm (GroupNorm with one group), ``"in"`` InstanceNorm (GroupNorm
with one channel per group), ``"none"``.

>>> import torch
>>> net = build("resnet", num_classes=10, width=8)
>>> net(torch.zeros(2, 1, 28, 28)).shape, net.split_point
(torch.Size([2, 10]), 'stage2')
>>> NETS.names()
['lenet', 'mobilenet', 'resnet', 'resnet56', 'wide_resnet']
>>> from tessera.compat.components import feature_shape, split_at
>>> r56 = build("resnet56")
>>> ext, head = split_at(r56, r56.split_point)
>>> sum(isinstance(m, BasicBlock) for m in r56.modules()), feature_shape(ext, (1, 32, 32))
(27, (32, 16, 16))
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

__all__ = ["NETS", "build", "make_norm", "ConvNormAct", "BasicBlock", "MobileNetV2Block", "L2Features",
           "mobile_head", "mobile_head_body", "adapter", "NORMS"]

NETS: Registry = Registry("compat network")
NORMS = ("bn", "ln", "in", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """A 2-d norm layer by name: bn | ln | in | none.

    >>> make_norm("ln", 8).num_groups, make_norm("in", 8).num_groups
    (1, 8)
    """
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "ln":
        return nn.GroupNorm(1, channels)
    if kind == "in":
        return nn.GroupNorm(channels, channels)
    if kind == "none":
        return nn.Identity()
    raise ConfigError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class ConvNormAct(nn.Sequential):
    """conv(k, stride, groups) -> norm -> ReLU (optional)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, norm: str = "bn",
                 act: bool = True, groups: int = 1):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=norm == "none"),
                                   make_norm(norm, cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs plus a (1x1 conv when the shape changes) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1, norm: str = "bn"):
        super().__init__()
        self.conv1 = ConvNormAct(cin, cout, 3, stride, norm)
        self.conv2 = ConvNormAct(cout, cout, 3, 1, norm, act=False)
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else ConvNormAct(cin, cout, 1, stride, norm, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))  # (N, cout, H/s, W/s)


class MobileNetV2Block(nn.Module):
    """MobileNetV2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ identity if it fits)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expansion: int = 4, norm: str = "bn"):
        super().__init__()
        mid = cin * expansion
        self.expand = ConvNormAct(cin, mid, 1, 1, norm)
        self.dw = ConvNormAct(mid, mid, 3, stride, norm, groups=mid)
        self.project = ConvNormAct(mid, cout, 1, 1, norm, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class L2Features(nn.Module):
    """Scale each example's feature map to unit L2 norm (times ``sqrt(C*H*W)``, so entries stay ~1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = F.normalize(x.flatten(1), dim=1)  # (N, D)
        return (flat * math.sqrt(flat.shape[1])).view_as(x)


def _stages(stem: nn.Module, s1: nn.Module, s2: nn.Module, s3: nn.Module, c3: int, num_classes: int,
            l2_features: bool) -> nn.Sequential:
    mods: list[tuple[str, nn.Module]] = [("stem", stem), ("stage1", s1), ("stage2", s2)]
    if l2_features:
        mods.append(("l2", L2Features()))
    mods += [("stage3", s3), ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
             ("fc", nn.Linear(c3, num_classes))]
    net = nn.Sequential(OrderedDict(mods))
    net.split_point = "l2" if l2_features else "stage2"  # type: ignore[attr-defined]
    return net


def _blocks(cin: int, cout: int, n: int, stride: int, norm: str) -> nn.Sequential:
    return nn.Sequential(*[BasicBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1, norm)
                           for i in range(n)])


@NETS.register("resnet", help="ResNet-style: 3 stages of basic blocks, widths w, 2w, 4w")
def resnet(num_classes: int = 10, in_chans: int = 1, width: int = 16, depth: int = 1, norm: str = "bn",
           l2_features: bool = False) -> nn.Sequential:
    """(N, in, H, W) -> stage2 features (N, 4w, H/4, W/4) -> logits (N, classes)."""
    w = width
    return _stages(ConvNormAct(in_chans, w, 3, 1, norm), _blocks(w, 2 * w, depth, 2, norm),
                   _blocks(2 * w, 4 * w, depth, 2, norm), _blocks(4 * w, 4 * w, depth, 1, norm),
                   4 * w, num_classes, l2_features)


@NETS.register("resnet56", help="the paper's ResNet-56 shape: 3 stages x 9 blocks, 16/32/64, stride-1 first stage")
def resnet56(num_classes: int = 10, in_chans: int = 1, width: int = 16, blocks: int = 9, norm: str = "bn",
             l2_features: bool = False) -> nn.Sequential:
    """(N, in, H, W) -> stage2 features (N, 2w, H/2, W/2) -> logits; ``blocks=n`` is ResNet-(6n+2).

    Shortcuts that change the shape are 1x1 convolutions (He et al.'s option B; their CIFAR nets pad
    with zeros, option A). Stage ``k``'s blocks are ``stage{k}.0`` .. ``stage{k}.{blocks-1}``: split
    inside a stage with a dotted name, e.g. ``split_at(net, "stage3.0")`` (App. C.4's sweep).
    """
    w = width
    return _stages(ConvNormAct(in_chans, w, 3, 1, norm), _blocks(w, w, blocks, 1, norm),
                   _blocks(w, 2 * w, blocks, 2, norm), _blocks(2 * w, 4 * w, blocks, 2, norm),
                   4 * w, num_classes, l2_features)


@NETS.register("wide_resnet", help="wide ResNet-style: 2x the width, 2 blocks per stage")
def wide_resnet(num_classes: int = 10, in_chans: int = 1, width: int = 32, depth: int = 2, norm: str = "bn",
                l2_features: bool = False) -> nn.Sequential:
    """Like :func:`resnet` but wider and deeper by default: stage2 features (N, 4w, H/4, W/4)."""
    return resnet(num_classes, in_chans, width, depth, norm, l2_features)


@NETS.register("mobilenet", help="MobileNetV2-style inverted residual blocks")
def mobilenet(num_classes: int = 10, in_chans: int = 1, width: int = 16, norm: str = "bn",
              l2_features: bool = False) -> nn.Sequential:
    """(N, in, H, W) -> stage2 features (N, 2w, H/4, W/4) -> logits; cheap depthwise convs."""
    w = width
    s1 = nn.Sequential(MobileNetV2Block(w, w, 2, 4, norm), MobileNetV2Block(w, w, 1, 4, norm))
    s2 = nn.Sequential(MobileNetV2Block(w, 2 * w, 2, 4, norm), MobileNetV2Block(2 * w, 2 * w, 1, 4, norm))
    s3 = mobile_head_body(2 * w, 2 * w, norm)
    return _stages(ConvNormAct(in_chans, w, 3, 1, norm), s1, s2, s3, 2 * w, num_classes, l2_features)


@NETS.register("lenet", help="LeNet-style plain conv net (no residuals)")
def lenet(num_classes: int = 10, in_chans: int = 1, width: int = 16, norm: str = "bn",
          l2_features: bool = False) -> nn.Sequential:
    """conv-pool stages: stage2 features (N, 2w, H/4, W/4)."""
    w = width
    s1 = nn.Sequential(ConvNormAct(w, w, 3, 1, norm), nn.MaxPool2d(2))
    s2 = nn.Sequential(ConvNormAct(w, 2 * w, 3, 1, norm), nn.MaxPool2d(2))
    s3 = ConvNormAct(2 * w, 4 * w, 3, 1, norm)
    return _stages(ConvNormAct(in_chans, w, 5, 1, norm), s1, s2, s3, 4 * w, num_classes, l2_features)


def mobile_head_body(cin: int, cout: int, norm: str = "bn", blocks: int = 2, expansion: int = 4) -> nn.Sequential:
    """``blocks`` stride-1 inverted residual blocks: the body of a MobileNet-style head."""
    if blocks < 1:
        raise ConfigError(f"a MobileNet-style head needs blocks >= 1, got {blocks}")
    return nn.Sequential(*[MobileNetV2Block(cin if i == 0 else cout, cout, 1, expansion, norm) for i in range(blocks)])


def mobile_head(width: int, num_classes: int, norm: str = "bn", blocks: int = 2, expansion: int = 4) -> nn.Sequential:
    """MobileNet-style head on (N, width, h, w) features of any resolution -> (N, classes).

    The paper's head (Sec. 5.2) is MobileNet V2 after its 11th of 17 inverted residual blocks: 6 blocks
    with expansion 6 (``blocks=6, expansion=6``); here every block keeps ``width`` channels, stride 1,
    and there is no final 1280-channel 1x1 convolution.

    >>> sum(isinstance(m, MobileNetV2Block) for m in mobile_head(8, 10, blocks=6, expansion=6).modules())
    6
    """
    return nn.Sequential(OrderedDict([("stage3", mobile_head_body(width, width, norm, blocks, expansion)),
                                      ("pool", nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
                                      ("fc", nn.Linear(width, num_classes))]))


def adapter(cin: int, cout: int) -> nn.Conv2d:
    """1x1 convolution mapping an extractor's channels to the common width (Sec. 5.2)."""
    return nn.Conv2d(cin, cout, 1)


def build(name: str, **kwargs: Any) -> nn.Sequential:
    """Build a registered network by name (``NETS``); unknown names, unknown arguments and sizes that are
    not positive ints raise a one-line error."""
    NETS.get(name)
    for k in ("num_classes", "in_chans", "width", "depth"):
        v = kwargs.get(k, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"build({name!r}): {k} must be a positive int, got {v!r}")
    return NETS.create(name, **kwargs)
