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

__all__ = ["Trainer", "Method", "Callback", "Optim", "Supervised", "mix_seed", "Task", "TensorData", "Metric", "METRICS", "LOSSES", "EMA", "TrainConfig", "OptimConfig",
           "ScheduleConfig", "EmaConfig", "ModelConfig", "TaskConfig", "RunConfig", "load_run_config",
           "build_optimizer", "lr_factor", "train_main", "eval_main", "build_run", "seed_everything",
           "Checkpoint", "save_checkpoint", "load_checkpoint"]
