"""The one training engine: tasks (data + loss + metrics [+ head]), a method, exact resume, EMA, DDP.

>>> from tessera.train import Trainer, Task, TrainConfig   # programmatic use
>>> from tessera.train import Method, Callback, Optim      # the protocol a training method implements
>>> from tessera.train import train_main, eval_main        # what `tessera train` / `tessera eval` call
"""
from __future__ import annotations

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .cli_entry import build_run, eval_main, train_main
from .config import (EmaConfig, ModelConfig, OptimConfig, RunConfig, ScheduleConfig, TaskConfig, TrainConfig,
                     load_run_config)
from .ema import EMA
from .method import Callback, Method, Optim, Supervised
from .optim import build_optimizer, lr_factor
from .task import LOSSES, METRICS, Metric, Task, TensorData
from .trainer import Trainer, mix_seed, seed_everything

__all__ = ["Trainer", "Method", "Callback", "Optim", "Supervised", "Task", "TensorData", "METRICS", "LOSSES",
           "TrainConfig", "RunConfig", "load_run_config", "train_main", "eval_main", "seed_everything",
           "Checkpoint", "save_checkpoint", "load_checkpoint"]
"""The public surface; the other names imported above are for tessera's own packages (import them from
their modules; they may change)."""
