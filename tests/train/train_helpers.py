"""Tiny data and models for the trainer tests (sklearn's 8x8 digits; no files needed)."""
from __future__ import annotations

import torch
from torch import nn

from tessera.train import Task, TrainConfig


def digits(n_train: int = 256, n_eval: int = 128) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0   # (1797, 1, 8, 8)
    y = torch.tensor(d.target, dtype=torch.long)
    return (x[:n_train], y[:n_train]), (x[n_train:n_train + n_eval], y[n_train:n_train + n_eval])


class TinyNet(nn.Module):
    """conv + BN + dropout + linear: exercises buffers and the dropout RNG."""

    def __init__(self, num_classes: int = 10, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(c * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))            # (N, c, 8, 8)
        h = nn.functional.avg_pool2d(h, 2).flatten(1)    # (N, c * 16)
        return self.fc(self.drop(h))


def tiny_config(**kw) -> TrainConfig:
    base = dict(seed=0, steps=30, batch_size=32, eval_batch_size=64, log_every=5, checkpoint_every=0,
                eval_every=0, progress="off")
    base.update(kw)
    return TrainConfig(**base)


def tiny_setup(seed: int = 0, **kw):
    torch.manual_seed(seed)
    tr, ev = digits()
    model = TinyNet()
    task = Task("digits", train=tr, eval=ev, metrics=["accuracy"])
    return model, [task], tiny_config(seed=seed, **kw)
