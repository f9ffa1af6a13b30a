"""Adversarial discriminative adaptation (ADDA, Tzeng et al. 2017) as losses and one step.

A :class:`Discriminator` (3-layer CNN over feature maps (N, C, H, W), or a 3-layer MLP over
vectors (N, D)) says "source" (1) or "target" (0) with binary cross-entropy. The target's feature
function is then trained with the *inverted* labels to fool it. :func:`adda_step` does one round of
both on any feature function; only the parameters inside the optimizers you pass ever move.

>>> disc = Discriminator.for_features((8, 4, 4), hidden=16)
>>> fs, ft = torch.randn(6, 8, 4, 4) + 1, torch.randn(6, 8, 4, 4)
>>> discriminator_loss(disc(fs), disc(ft)).shape, adversarial_target_loss(disc(ft)).shape
(torch.Size([]), torch.Size([]))
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ShapeError
from .select import step_only

__all__ = ["Discriminator", "discriminator_loss", "adversarial_target_loss", "adda_step"]


class Discriminator(nn.Module):
    """Domain classifier: one logit per sample, positive = source.

    Feature maps (C, H, W): conv3x3 -> LeakyReLU -> conv3x3 stride 2 -> LeakyReLU -> conv1x1 to one
    channel, averaged over space. Vectors (D,): Linear -> LeakyReLU -> Linear -> LeakyReLU -> Linear.
    """

    def __init__(self, layers: nn.Sequential, spatial: bool):
        super().__init__()
        self.layers, self.spatial = layers, spatial

    @classmethod
    def for_features(cls, shape: Sequence[int], hidden: int = 64) -> "Discriminator":
        """A discriminator for per-sample features of ``shape`` ((C, H, W) or (D,))."""
        shape = tuple(int(s) for s in shape)
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        if len(shape) == 3:
            c = shape[0]
            layers = nn.Sequential(nn.Conv2d(c, hidden, 3, padding=1), act(),
                                   nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), act(),
                                   nn.Conv2d(hidden, 1, 1))
            return cls(layers, True)
        if len(shape) == 1:
            d = shape[0]
            layers = nn.Sequential(nn.Linear(d, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 1))
            return cls(layers, False)
        raise ShapeError(f"features of per-sample shape {shape}; a discriminator takes (C, H, W) maps or (D,) vectors")

    def forward(self, f: Tensor) -> Tensor:
        """(N, C, H, W) or (N, D) -> (N,) logits (source > 0)."""
        out = self.layers(f)                                  # (N, 1, H', W') or (N, 1)
        return out.mean((1, 2, 3)) if self.spatial else out[:, 0]


def discriminator_loss(source_logits: Tensor, target_logits: Tensor) -> Tensor:
    """BCE with source = 1, target = 0; the two domains weigh equally whatever their batch sizes."""
    ls = F.binary_cross_entropy_with_logits(source_logits, torch.ones_like(source_logits))
    lt = F.binary_cross_entropy_with_logits(target_logits, torch.zeros_like(target_logits))
    return 0.5 * (ls + lt)


def adversarial_target_loss(target_logits: Tensor) -> Tensor:
    """The inverted-label (GAN) loss of the target features: BCE against "source" (1)."""
    return F.binary_cross_entropy_with_logits(target_logits, torch.ones_like(target_logits))


def adda_step(target_features: Callable[[Tensor], Tensor], x_target: Tensor, source_features: Tensor,
              discriminator: nn.Module, disc_opt: torch.optim.Optimizer, target_opt: torch.optim.Optimizer,
              ) -> dict[str, float]:
    """One ADDA round: a discriminator step, then a target step with inverted labels.

    Args:
        target_features: ``x -> features`` through the trainable target mapping (with grad).
        x_target: a batch of target inputs (no labels).
        source_features: a batch of (fixed) source features, same per-sample shape.
        discriminator: the domain classifier; ``disc_opt`` holds its parameters.
        target_opt: holds ONLY the parameters the target mapping may change.

    Returns ``{"disc_loss", "target_loss", "disc_acc"}`` (losses before each step).
    """
    ft = target_features(x_target)                          # (N, ...) with grad into target params
    fs = source_features.detach()
    if fs.shape[1:] != ft.shape[1:]:
        raise ShapeError(f"source features {tuple(fs.shape[1:])} vs target features {tuple(ft.shape[1:])}; "
                         f"take both from the same layer")
    ls, lt = discriminator(fs), discriminator(ft.detach())
    d_loss = step_only(disc_opt, discriminator_loss(ls, lt))
    acc = 0.5 * (float((ls > 0).float().mean()) + float((lt < 0).float().mean()))
    g_loss = step_only(target_opt, adversarial_target_loss(discriminator(ft)))
    return {"disc_loss": d_loss, "target_loss": g_loss, "disc_acc": acc}
