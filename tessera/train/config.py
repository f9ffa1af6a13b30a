"""Typed run configuration: YAML files map onto these dataclasses strictly (see :mod:`tessera.config`).

A run file has four sections::

    model: {name: isometric_small, kwargs: {depth: 8, patch: 2}}
    tasks: [{name: mnist, dataset: mnist}]
    train: {steps: 2000, batch_size: 128, optim: {name: rmsprop, lr: 0.02}, ema: {decay: 0.999}}
    data_root: null

Run length: ``train.steps`` (or ``train.epochs``) is the length of the LR schedule. The CLI's
``--steps N`` only says where to stop ("train until global step N", at most the schedule's end); it
never changes the schedule, so a run stopped at step 15 and resumed to 30 follows exactly the same LR
curve as a run of 30. To train longer, lengthen the schedule (``--set train.steps=N``).

Every field is checked when the config is built: types, ranges (``ge`` / ``gt`` / ``le`` / ``lt`` in
the field's metadata, see :func:`tessera.config.check_bounds`), finite numbers, known losses, metrics
and device names, ``threads`` at most 4 per CPU core; a wrong value raises one line naming the key.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config import FieldError, check_bounds, from_dict, load_config, to_dict
from ..errors import ConfigError
from .task import LOSSES, METRICS

__all__ = ["OptimConfig", "ScheduleConfig", "EmaConfig", "TrainConfig", "ModelConfig", "TaskConfig",
           "RunConfig", "load_run_config", "RUN_LENGTH_KEYS", "config_diff"]


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = None, **bounds: float) -> Any:
    """A field with help text and optional bounds (``ge`` / ``gt`` / ``le`` / ``lt``, see ``check_bounds``)."""
    meta = {"help": text, **bounds}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# A cap on train.threads: far more threads than cores only slows torch down, and a huge count crashes
# OpenMP (a segfault at 100000).
MAX_THREADS_PER_CPU = 4
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


@dataclass
class OptimConfig:
    """Optimizer. Defaults follow paper 002, App. A.2 (RMSProp, weight decay 1e-5)."""

    name: Literal["rmsprop", "rmsprop_tf", "adam", "adamw", "sgd"] = _help(
        "optimizer: rmsprop (torch) | rmsprop_tf (TensorFlow semantics, as in the paper) | adam | adamw | sgd",
        "rmsprop")
    lr: float = _help("peak learning rate (after warmup), > 0", 0.02, gt=0)
    weight_decay: float = _help("L2 weight decay (decoupled for adamw), >= 0", 1e-5, ge=0)
    momentum: float = _help("momentum (rmsprop, sgd), in [0, 1)", 0.9, ge=0, lt=1)
    alpha: float = _help("rmsprop: decay of the squared-gradient average, in [0, 1)", 0.9, ge=0, lt=1)
    eps: float = _help("epsilon of rmsprop / adam (rmsprop_tf: inside the square root), >= 0", 1e-3, ge=0)
    betas: tuple[float, float] = _help("adam / adamw betas, each in [0, 1)", (0.9, 0.999), ge=0, lt=1)
    nesterov: bool = _help("sgd: Nesterov momentum (needs momentum > 0)", False)
    no_decay_1d: bool = _help("exclude biases and norm weights (1-d tensors) from weight decay", True)
    fused: bool = _help("adam / adamw: torch's fused kernel (one op per group; same update up to rounding)", False)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.fused and self.name not in ("adam", "adamw"):
            raise FieldError("fused", f"only adam and adamw have a fused kernel, not {self.name}; set fused: false")
        if len(self.betas) != 2:
            raise FieldError("betas", f"expected 2 numbers, got {list(self.betas)}")
        if self.name == "sgd" and self.nesterov and self.momentum == 0:
            raise FieldError("nesterov", "Nesterov needs momentum > 0; set momentum or nesterov: false")


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: a pure function of the global step (nothing to save but the step)."""

    name: Literal["constant", "cosine", "linear", "step", "exponential"] = _help(
        "constant | cosine | linear (to final_lr_frac) | step (x gamma every step_size) | exponential", "cosine")
    warmup_steps: int = _help("linear warmup from 0 over this many steps", 0, ge=0)
    final_lr_frac: float = _help("cosine / linear: final lr as a fraction of the peak lr, in [0, 1]", 0.0, ge=0, le=1)
    step_size: int = _help("step: steps between decays", 1000, ge=1)
    gamma: float = _help("step / exponential: decay factor in (0, 1] (exponential: per step_size steps)", 0.1,
                         gt=0, le=1)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class EmaConfig:
    """Exponential moving average of the weights, used for evaluation (paper 002, App. A.2)."""

    enabled: bool = _help("keep an EMA of the weights and evaluate with it", True)
    decay: float = _help("EMA decay per step, in [0, 1)", 0.999, ge=0, lt=1)
    warmup: bool = _help("use min(decay, (1+n)/(10+n)) after n updates, as TF's ExponentialMovingAverage", True)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class TrainConfig:
    """How to train: run length, batching, optimizer, schedule, EMA, logging and checkpoints."""

    seed: int = _help("seed of model init, data order and dropout", 0)
    steps: int | None = _help("total optimizer steps = LR-schedule length (or give epochs)", None, ge=1)
    epochs: float | None = _help("alternative to steps: passes over the first task's training set", None, gt=0)
    batch_size: int = _help("global batch size per task (split across DDP ranks)", 128, ge=1)
    eval_batch_size: int = _help("batch size for evaluation", 1000, ge=1)
    eval_every: int = _help("evaluate every N steps (0: only at the end)", 0, ge=0)
    checkpoint_every: int = _help("checkpoint every N steps (0: only at the end)", 500, ge=0)
    log_every: int = _help("write a metrics.jsonl training line every N steps", 50, ge=0)
    multitask: Literal["round_robin", "sum"] = _help(
        "several tasks: one task per step in turn (round_robin) or all tasks' losses summed each step", "round_robin")
    clip_grad: float = _help("clip the global gradient norm to this value (0: off)", 0.0, ge=0)
    device: str = _help("auto | cpu | cuda | cuda:N | mps (auto: cuda > mps > cpu)", "auto")
    threads: int = _help("CPU threads for torch (0: torch's default); 1 is far faster on a CPU shared with "
                         f"other busy processes; at most {MAX_THREADS_PER_CPU} per CPU core", 0, ge=0)
    progress: Literal["auto", "on", "off"] = _help("tqdm progress bar: auto = when stderr is a terminal", "auto")
    optim: OptimConfig = _help("optimizer", factory=OptimConfig)
    schedule: ScheduleConfig = _help("learning-rate schedule", factory=ScheduleConfig)
    ema: EmaConfig = _help("EMA of the weights for evaluation", factory=EmaConfig)

    def __post_init__(self) -> None:
        # programmatic convenience: TrainConfig(optim={"name": "adam", "lr": 1e-3})
        for k, cls in (("optim", OptimConfig), ("schedule", ScheduleConfig), ("ema", EmaConfig)):
            if isinstance(getattr(self, k), dict):
                setattr(self, k, from_dict(cls, getattr(self, k), prefix=f"train.{k}."))
        if self.steps is None and self.epochs is None:
            raise ConfigError("config: set 'train.steps' or 'train.epochs' (the LR-schedule length)")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("config: set only one of 'train.steps' and 'train.epochs'")
        check_bounds(self)
        cap = MAX_THREADS_PER_CPU * (os.cpu_count() or 1)
        if self.threads > cap:
            raise FieldError("threads", f"{self.threads} is more than {MAX_THREADS_PER_CPU} per CPU core "
                                        f"({os.cpu_count()} here); use 0 (torch's default) or at most {cap}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise FieldError("device", f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")


@dataclass
class ModelConfig:
    """Which network: ``tessera.nn.create_model(name, num_classes=..., **kwargs)``."""

    name: str = _help("registered model name, e.g. isometric_small", "isometric_small")
    kwargs: dict[str, Any] = _help("keyword arguments of the model constructor", factory=dict)


@dataclass
class TaskConfig:
    """One task = data + loss + metrics (+ an optional head)."""

    name: str = _help("task name used in metrics.jsonl and final.json")
    dataset: str = _help("dataset name for tessera.data.load_images, e.g. mnist")
    split_train: str = _help("training split", "train")
    split_eval: str = _help("evaluation split", "test")
    loss: str = _help("loss: cross_entropy | mse | bce", "cross_entropy")
    metrics: list[str] = _help("metrics: accuracy, mse, rmse, auc, perplexity, ...", factory=lambda: ["accuracy"])
    num_classes: int | None = _help("classes (default: inferred from the training labels)", None, ge=1)
    weight: float = _help("loss weight (multitask: sum), >= 0", 1.0, ge=0)
    limit_train: int | None = _help("use only the first N training samples (debugging)", None, ge=1)
    limit_eval: int | None = _help("use only the first N evaluation samples (debugging)", None, ge=1)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("config: every task needs a 'name'")
        if not self.dataset:
            raise ConfigError(f"config: task {self.name!r} needs a 'dataset', e.g. mnist")
        check_bounds(self)
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise FieldError("loss", f"unknown loss {self.loss!r}; choose from {', '.join(LOSSES.names())}")
        for m in self.metrics:
            if isinstance(m, str) and m != "loss" and m not in METRICS:
                raise FieldError("metrics", f"unknown metric {m!r}; choose from loss, {', '.join(METRICS.names())}")


@dataclass
class RunConfig:
    """A training run: model + tasks + training settings + where the data lives."""

    model: ModelConfig = _help("the network", factory=ModelConfig)
    tasks: list[TaskConfig] = _help("one or more tasks trained together", factory=list)
    train: TrainConfig = _help("training settings", factory=lambda: TrainConfig(steps=1000))
    data_root: str | None = _help("dataset folder (default: tessera.data.resolve_root)", None)

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("config: 'tasks' is empty; add at least one task, e.g. {name: mnist, dataset: mnist}")
        names = [t.name for t in self.tasks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"config: task names must be unique, {sorted(dup)[0]!r} repeats; rename one")


def load_run_config(path: str | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a run YAML file (+ ``key=value`` overrides) into a :class:`RunConfig`."""
    return load_config(RunConfig, path, overrides)


# Keys that may differ when resuming: they change how long / where a run goes, not what it computes.
RUN_LENGTH_KEYS = frozenset({
    "train.steps", "train.epochs", "train.eval_every", "train.checkpoint_every", "train.log_every",
    "train.progress", "train.device", "train.threads", "train.eval_batch_size", "data_root",
})


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    if isinstance(d, (list, tuple)) and d and all(isinstance(v, dict) for v in d):
        out = {}
        for i, v in enumerate(d):
            out.update(_flatten(v, f"{prefix[:-1]}[{i}]."))
        return out
    return {prefix[:-1]: list(d) if isinstance(d, tuple) else d}


def config_diff(old: Any, new: Any, ignore: frozenset[str] = RUN_LENGTH_KEYS) -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two configs (dataclasses or dicts), minus ``ignore``."""
    a = _flatten(to_dict(old))
    b = _flatten(to_dict(new))
    out = []
    for k in sorted(set(a) | set(b)):
        if k in ignore:
            continue
        if a.get(k, "<missing>") != b.get(k, "<missing>"):
            out.append((k, a.get(k, "<missing>"), b.get(k, "<missing>")))
    return out
