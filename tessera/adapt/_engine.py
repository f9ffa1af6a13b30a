"""What every adaptation routine shares when it runs on the engine (:class:`tessera.train.Trainer`).

A routine builds its :class:`~tessera.train.Task` list and a :class:`Recorded` method and calls
:func:`fit`: the engine owns the steps, the optimizers (Adam here, see :func:`adam`), the linear
learning-rate decay of App. D.2 (:func:`linear`), the gradient all-reduce and the checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..config import to_dict
from ..errors import ConfigError
from ..train import Method, OptimConfig, ScheduleConfig, Task, Trainer, TrainConfig, mix_seed
from ..train.config import EmaConfig

__all__ = ["Recorded", "adam", "linear", "fit", "check_target_bn"]


def adam(lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> OptimConfig:
    """torch's Adam defaults (eps 1e-8), no weight decay."""
    return OptimConfig(name="adam", lr=float(lr), betas=betas, eps=1e-8, weight_decay=0.0)


def linear(lr: float, final_lr: float | None) -> ScheduleConfig:
    """A linear ramp from ``lr`` (first step) to ``final_lr`` (last step); constant when ``final_lr`` is None."""
    if final_lr is None or final_lr == lr:
        return ScheduleConfig(name="constant")
    return ScheduleConfig(name="linear", final_lr_frac=float(final_lr) / float(lr))


def check_target_bn(target_bn: str) -> bool:
    """``"train"`` -> True (target BN on batch statistics, updated), ``"eval"`` -> False (frozen)."""
    if target_bn not in ("train", "eval"):
        raise ConfigError(f"target_bn={target_bn!r}; choose 'train' (target BN on batch statistics, updated) "
                          f"or 'eval' (frozen statistics)")
    return target_bn == "train"


class Recorded(Method):
    """A method that keeps the recorded scalars of every step (rank-averaged) as its ``history``,
    saved in every checkpoint so that a resumed run returns the same history as a straight one."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        self.history.append(dict(logs["values"]))

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict[str, dict[str, float]]) -> None:
        """An evaluation's accuracies join that step's entry as ``val_<task>`` (e.g. ``val_usps``)."""
        if self.history and step == len(self.history):
            self.history[-1].update({f"val_{t}": m["accuracy"] for t, m in metrics.items() if "accuracy" in m})

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state.get("history", [])]


def fit(model: nn.Module, tasks: Sequence[Task], method: Recorded, *, name: str, steps: int, batch_size: int,
        seed: int, settings: dict[str, Any], out_dir: str | Path | None, checkpoint_every: int,
        device: str | None, eval_every: int = 0) -> Trainer:
    """Run ``method`` for ``steps`` steps on the engine (resuming from ``out_dir`` when it holds a
    checkpoint); every module's train/eval flag is restored afterwards. ``settings`` (the routine's
    hyperparameters) are stored in the checkpoints: resuming with other settings is refused."""
    if steps < 1:
        raise ConfigError(f"{name}: steps must be >= 1, got {steps}")
    dev = device if device is not None else str(next(model.parameters()).device)
    cfg = TrainConfig(steps=int(steps), batch_size=int(batch_size), seed=int(seed), device=dev, log_every=0,
                      checkpoint_every=int(checkpoint_every) if out_dir is not None else 0, progress="off",
                      eval_every=int(eval_every),
                      eval_batch_size=512, ema=EmaConfig(enabled=False), schedule=ScheduleConfig(name="constant"))
    torch.manual_seed(mix_seed(seed, 31337))   # dropout draws of a fresh run (a resume restores its RNG)
    modes = [(m, m.training) for m in model.modules()]
    run_config = {"train": to_dict(cfg), name: to_dict(settings)}
    trainer = Trainer(model, tasks, cfg, out_dir=out_dir, method=method, run_config=run_config)
    try:
        trainer.fit(resume=out_dir is not None)
    finally:
        for m, was in modes:
            m.training = was
    return trainer
