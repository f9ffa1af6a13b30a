"""Adversarial discriminative adaptation (ADDA, Tzeng et al. 2017): two losses and an engine method.

A :class:`Discriminator` (3-layer CNN over feature maps (N, C, H, W), or a 3-layer MLP over
vectors (N, D)) says "source" (1) or "target" (0) with binary cross-entropy
(:func:`discriminator_loss`); the target's feature function is trained with the *inverted* labels
to fool it (:func:`adversarial_target_loss`). :class:`ADDA` is the alternating min-max as a
:class:`tessera.train.Method`: each step yields ``("disc", loss)`` and then ``("target", loss)``
against the discriminator the engine has just updated; the engine backpropagates each loss into
that optimizer's parameters only, so nothing but the discriminator and the target's own
parameters ever moves. :func:`tessera.adapt.adapt_adda` runs it.

>>> import torch
>>> disc = Discriminator.for_features((8, 4, 4), hidden=16)
>>> fs, ft = torch.randn(6, 8, 4, 4) + 1, torch.randn(6, 8, 4, 4)
>>> discriminator_loss(disc(fs), disc(ft)).shape, adversarial_target_loss(disc(ft)).shape
(torch.Size([]), torch.Size([]))
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ShapeError
from ..train import Optim, Trainer
from ._engine import Recorded, adam, check_target_bn, linear
from .models import DAModel

__all__ = ["Discriminator", "discriminator_loss", "adversarial_target_loss", "ADDA"]


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


class ADDA(Recorded):
    """ADDA on the target's own parameters (paper 002 App. D.3) as an engine method.

    Task 0 of the run is the unlabelled target. Each step: a batch of fixed source features is drawn
    from ``source_features`` (M, ...) with the step's generator (the same draws on every rank and
    after a resume), the discriminator steps on source vs (detached) target features (optimizer
    ``"disc"``: Adam, betas (0.5, 0.999), ``disc_lr`` decaying linearly to ``disc_final_lr``), then
    the target's parameters step on the inverted-label loss against the *updated* discriminator
    (optimizer ``"target"``: Adam, ``lr``, linear to ``final_lr`` or constant). Records
    ``disc_loss``, ``disc_acc`` and ``target_loss``. ``target_bn="eval"`` freezes every BN statistic
    (only the trained parameters act); ``"train"`` lets the target's own BN layers use batch
    statistics and update the target's.
    """

    def __init__(self, model: DAModel, target: str, source_features: Tensor, discriminator: nn.Module, *,
                 lr: float = 1e-3, final_lr: float | None = None, disc_lr: float = 2e-4,
                 disc_final_lr: float | None = 1e-5, target_bn: str = "eval"):
        super().__init__()
        self.model, self.target, self.pool, self.disc = model, target, source_features, discriminator
        self.train_bn = check_target_bn(target_bn)
        self.lr, self.final_lr, self.disc_lr, self.disc_final_lr = lr, final_lr, disc_lr, disc_final_lr

    def modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.disc}

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        return {"disc": Optim(list(self.disc.parameters()), config=adam(self.disc_lr, (0.5, 0.999)),
                              schedule=linear(self.disc_lr, self.disc_final_lr)),
                "target": Optim(list(self.model.target_parameters(self.target).values()), config=adam(self.lr),
                                schedule=linear(self.lr, self.final_lr))}

    def on_fit_start(self, trainer: Trainer) -> None:
        self.pool = self.pool.to(trainer.device)

    def training_step(self, trainer: Trainer, step: int) -> Iterator[tuple[str, Tensor]]:
        self.model.set_adapt_mode(self.target, self.train_bn)
        xt, _ = trainer.batch(0)                                       # this rank's target shard (n, ...)
        idx = torch.randint(len(self.pool), (trainer.batch_size(trainer.tasks[0]),), generator=trainer.generator(0))
        fs = self.pool[trainer.shard(idx).to(self.pool.device)]       # (n, ...) fixed source features
        ft = self.model.features(xt, self.target)                      # (n, ...) with grad into the target
        if fs.shape[1:] != ft.shape[1:]:
            raise ShapeError(f"source features {tuple(fs.shape[1:])} vs target features {tuple(ft.shape[1:])}; "
                             f"take both from the same layer")
        ls, lt = self.disc(fs), self.disc(ft.detach())                 # (n,), (n,) logits, source > 0
        d_loss = discriminator_loss(ls, lt)
        trainer.record("disc_loss", d_loss)
        trainer.record("disc_acc", 0.5 * ((ls > 0).float().mean() + (lt < 0).float().mean()))
        yield "disc", d_loss                                           # the engine steps the discriminator
        g_loss = adversarial_target_loss(self.disc(ft))                # against the updated discriminator
        trainer.record("target_loss", g_loss)
        yield "target", g_loss

    def settings(self) -> dict[str, Any]:
        """The hyperparameters (stored in checkpoints)."""
        return {"target": self.target, "lr": self.lr, "final_lr": self.final_lr, "disc_lr": self.disc_lr,
                "disc_final_lr": self.disc_final_lr, "train_bn": self.train_bn, "pool": list(self.pool.shape)}
