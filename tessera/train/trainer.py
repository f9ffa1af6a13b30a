"""The one training engine: every loop in tessera runs here.

>>> import torch
>>> from torch import nn
>>> from tessera.train import Trainer, Task, TrainConfig
>>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
>>> cfg = TrainConfig(steps=5, batch_size=16, log_every=0, checkpoint_every=0, progress="off")
>>> final = Trainer(nn.Linear(4, 3), [Task("toy", train=(x, y), eval=(x, y))], cfg).fit()
>>> sorted(final["tasks"]["toy"])
['accuracy', 'loss']

What the engine owns: the step loop, named optimizers and their parameter groups, LR schedules,
gradient clipping, EMA, the gradient all-reduce under ``torchrun``, atomic checkpoints with exact
resume, progress bars and ``metrics.jsonl``. What a method owns (its losses, which parameters each
of its optimizers moves, its boundary hooks and state) it plugs in through :mod:`.method`; the
default method trains the tasks' own losses (:class:`~tessera.train.method.Supervised`).

Determinism. The data order is a pure function of ``(seed, task, step)``: task ``t`` at its ``k``-th
batch uses epoch ``e = k // batches_per_epoch`` of a permutation drawn from a generator seeded with
``(seed, t, e)`` (the last partial batch of an epoch is dropped). The LR is a pure function of the step.
The checkpoint stores model, optimizers, EMA, every rank's RNG state and the method's / callbacks' /
tasks' own state, so stopping at step 15 and resuming to 30 reproduces a straight 30-step run bit for
bit (same device and world size).

Data parallel. When ``torch.distributed`` is initialized (``torchrun``), every rank takes its slice of
each global batch, each update's gradients are averaged over ranks with one flat all-reduce (the same
average DDP computes; it works with several optimizers, per-task heads and several forwards per step,
which the ``DistributedDataParallel`` wrapper does not), floating-point buffers (BatchNorm statistics)
are averaged once per step, evaluation is sharded and reduced, and only rank 0 writes files.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from ..config import to_dict
from ..errors import ConfigError, TrainingError
from . import dist, signals
from .config import OptimConfig, ScheduleConfig, TrainConfig
from .ema import EMA
from .evaluate import evaluate_task, to_device
from .lock import claim_run_dir
from .preflight import check_tasks
from .runlog import RunLog
from .method import Callback, Method, Optim, Supervised, updates_of
from .optim import build_optimizer, lr_factor, param_groups_for, set_lr
from .state import TrainerState
from .task import Task

__all__ = ["Trainer", "seed_everything", "mix_seed"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mix_seed(*xs: int) -> int:
    """A 63-bit seed from several ints (FNV-1a style); pure, so the same on every rank and resume."""
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


_HOOKS = ("on_fit_start", "on_step_start", "on_step_end", "on_eval_end", "on_fit_end")


def _is_callback(obj: Any) -> bool:
    return isinstance(obj, Callback) or any(hasattr(obj, h) for h in _HOOKS)


class _FnCallback(Callback):
    def __init__(self, fn: Any):
        self.fn = fn

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, Any]) -> None:
        self.fn(trainer, step, logs)


class _Opt:
    """A built optimizer with its own schedule, clipping and the flat list of its parameters."""

    def __init__(self, name: str, spec: Optim, default: TrainConfig):
        cfg = spec.config if spec.config is not None else default.optim
        if isinstance(cfg, dict):
            cfg = OptimConfig(**{**to_dict(default.optim), **cfg})
        if spec.lr is not None:
            cfg = OptimConfig(**{**to_dict(cfg), "lr": float(spec.lr)})
        sched = spec.schedule if spec.schedule is not None else default.schedule
        if isinstance(sched, dict):
            sched = ScheduleConfig(**sched)
        self.name, self.schedule = name, sched
        self.lr_key = "train.optim.lr" if spec.config is None and spec.lr is None else f"the lr of optimizer {name!r}"
        self.clip = default.clip_grad if spec.clip_grad is None else float(spec.clip_grad)
        self.opt = build_optimizer(spec.groups, cfg)
        self.params: list[Tensor] = [p for g in self.opt.param_groups for p in g["params"]]
        if not self.params:
            raise ConfigError(f"optimizer {name!r} has no parameters; give it at least one trainable tensor")


class Trainer:
    """Train ``model`` on ``tasks`` with ``config`` and a ``method``; write metrics, checkpoints and
    final.json to ``out_dir``.

    Args:
        model: any ``nn.Module``; the default method computes ``Task.outputs(model, x)``.
        tasks: one or more :class:`Task` with unique names (the data the method draws from).
        config: :class:`TrainConfig` (run length, batch size, default optimizer and schedule, EMA, ...).
        out_dir: run directory (``metrics.jsonl``, ``ckpt/``, ``final.json``); None writes nothing.
        method: a :class:`~tessera.train.method.Method` (default: the tasks' own losses).
        callbacks: :class:`~tessera.train.method.Callback` objects, or callables ``fn(trainer, step, logs)``
            run at every step end (``step`` = steps done).
        param_groups: the default optimizer's parameter groups (tensors or dicts, a dict may set its own
            ``lr``); default: every trainable parameter of the model, task heads and method modules,
            with biases and norm weights exempt from weight decay.
        run_config: the full configuration stored in checkpoints and final.json and compared on resume
            (default: ``{"train": config}``).
        device: overrides ``config.device``.
    """

    def __init__(self, model: nn.Module, tasks: Sequence[Task], config: TrainConfig,
                 out_dir: str | Path | None = None, *, method: Method | None = None,
                 callbacks: Iterable[Any] = (), param_groups: Iterable[Any] | None = None,
                 run_config: Any = None, device: str | torch.device | None = None):
        self.config = config
        self.tasks = list(tasks)
        if not self.tasks:
            raise ConfigError("Trainer needs at least one Task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"task names must be unique, got {names}; rename the duplicates")
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.device = torch.device(device) if device is not None else dist.select_device(config.device)
        dist.init_from_env(self.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        # one run per directory (re-entrant in this process); released when the trainer goes away
        self._run_lock = claim_run_dir(self.out_dir, owner=self) if self.out_dir is not None and self.is_main else None
        self.run_config = to_dict(run_config) if run_config is not None else {"train": to_dict(config)}
        self.method = method if method is not None else Supervised()
        self.callbacks: list[Any] = [_FnCallback(c) if callable(c) and not _is_callback(c) else c
                                     for c in callbacks]

        self.model = model.to(self.device)
        heads = nn.ModuleDict({t.name: t.head for t in self.tasks if t.head is not None})
        extra = nn.ModuleDict(dict(getattr(self.method, "modules", lambda: {})()))
        parts = {"model": self.model, "heads": heads}
        if len(extra):
            parts["method"] = extra
        self.net = nn.ModuleDict(parts).to(self.device)
        dist.broadcast_module(self.net)
        if self.world > 1:  # ranks draw different dropout masks
            torch.manual_seed(mix_seed(config.seed, 7919, self.rank))

        self._default_groups = list(param_groups) if param_groups is not None else None
        self.opts = {n: _Opt(n, s, config) for n, s in self.method.optimizers(self).items()}
        if not self.opts:
            raise ConfigError(f"{type(self.method).__name__}.optimizers returned no optimizer; return at least one")
        self._buffers = [b for b in self.net.buffers() if b.is_floating_point()]
        self.ema = EMA(self.net, config.ema.decay, config.ema.warmup) if config.ema.enabled else None

        self.step = 0
        self.total_steps = self._total_steps() if all(t.train_data is not None for t in self.tasks) else None
        self.should_stop = False
        self.stop_signal = 0          # SIGINT / SIGTERM under signals.graceful_stop: stop, checkpoint
        self._perm: dict[int, tuple[int, Tensor]] = {}
        self._records: dict[str, Tensor] = {}
        self.last_eval: dict[str, dict[str, float]] = {}
        self.log = RunLog(self)
        self.state = TrainerState(self)

    # ------------------------------------------------------------------------------ optimizers
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The ``"main"`` optimizer (or the only one)."""
        return self.opts["main"].opt if "main" in self.opts else next(iter(self.opts.values())).opt

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {n: o.opt for n, o in self.opts.items()}

    def default_param_groups(self) -> list[Any]:
        """The default optimizer's groups: ``param_groups`` given to the Trainer, or every trainable
        parameter of ``net`` (decayed >= 2-d tensors, non-decayed biases and norm scales)."""
        if self._default_groups is not None:
            return self._default_groups
        return param_groups_for(self.net, self.config.optim.weight_decay, self.config.optim.no_decay_1d)

    def callbacks_and_method(self) -> list[Any]:
        return [self.method, *self.callbacks]

    # ------------------------------------------------------------------------------------ data
    def batch_size(self, task: Task) -> int:
        return task.batch_size or self.config.batch_size

    def task_index(self, task: int | str) -> int:
        if isinstance(task, int):
            return task
        for i, t in enumerate(self.tasks):
            if t.name == task:
                return i
        raise ConfigError(f"no task named {task!r}; tasks are {[t.name for t in self.tasks]}")

    def _check_train_data(self) -> None:
        for t in self.tasks:
            if t.train_data is None:
                raise ConfigError(f"task {t.name!r} has no training data; pass train=(x, y)")
            b = self.batch_size(t)
            if b % self.world:
                raise ConfigError(f"batch size {b} of task {t.name!r} is not divisible by the {self.world} "
                                  f"ranks; set train.batch_size to a multiple of {self.world}")
            if len(t.train_data) < b:
                raise ConfigError(f"task {t.name!r} has {len(t.train_data)} training samples, fewer than one "
                                  f"batch of {b}; lower train.batch_size")

    def _total_steps(self) -> int:
        c = self.config
        if c.steps is not None:
            return int(c.steps)
        t0 = self.tasks[0]
        per_epoch = len(t0.train_data) // self.batch_size(t0)
        if c.multitask == "round_robin":
            per_epoch *= len(self.tasks)
        return max(1, int(round(float(c.epochs) * per_epoch)))

    def active_tasks(self, step: int) -> list[tuple[int, int]]:
        """``[(task index, that task's batch number)]`` trained at global ``step`` (default method)."""
        n = len(self.tasks)
        if n == 1 or self.config.multitask == "sum":
            return [(i, step) for i in range(n)]
        return [(step % n, step // n)]

    def batch_indices(self, ti: int, k: int) -> Tensor:
        """This rank's sample indices of task ``ti``'s ``k``-th batch (pure function of seed, ti, k)."""
        task = self.tasks[ti]
        n, b = len(task.train_data), self.batch_size(task)
        epoch, j = divmod(k, n // b)
        if task.order == "sequential":
            idx = torch.arange(j * b, (j + 1) * b)
        else:
            cached = self._perm.get(ti)
            if cached is None or cached[0] != epoch:
                g = torch.Generator().manual_seed(mix_seed(self.config.seed, ti, epoch))
                cached = (epoch, torch.randperm(n, generator=g))
                self._perm[ti] = cached
            idx = cached[1][j * b:(j + 1) * b]                     # (B,) global batch
        per = b // self.world
        return idx[self.rank * per:(self.rank + 1) * per]          # (B / W,) this rank's shard

    def batch(self, task: int | str = 0, k: int | None = None) -> tuple[Any, Any]:
        """``(x, y)`` of ``task``'s ``k``-th training batch (default: the current step), this rank's
        shard, on the device, with the task's ``transform`` applied (``y`` is None when unlabelled)."""
        ti = self.task_index(task)
        t = self.tasks[ti]
        # a gather, never views of the dataset: a transform or a model that writes into its input in place
        # (nn.ReLU(inplace=True) as the first layer) must not change the training data
        x, y = t.train_data[self.batch_indices(ti, self.step if k is None else k)]
        x, y = to_device(x, self.device), to_device(y, self.device)
        if t.transform is not None:
            x = t.transform(x)
        return x, y

    def generator(self, *keys: int) -> torch.Generator:
        """A CPU generator seeded by (seed, step, *keys): the same draws on every rank and after resume."""
        return torch.Generator().manual_seed(mix_seed(self.config.seed, 104729, self.step, *keys))

    def shard(self, t: Tensor) -> Tensor:
        """This rank's equal slice of a per-step global tensor (first dim divisible by the world size)."""
        if self.world == 1:
            return t
        per = t.shape[0] // self.world
        return t[self.rank * per:(self.rank + 1) * per]

    # ----------------------------------------------------------------------------------- train
    def record(self, name: str, value: Tensor | float) -> None:
        """Log a scalar for this step (averaged over ranks and over the logging window)."""
        v = value.detach().float().reshape(()) if torch.is_tensor(value) else torch.tensor(float(value))
        self._records[name] = v

    def _update(self, name: str, loss: Tensor, step: int) -> None:
        """Backpropagate ``loss`` into optimizer ``name``'s parameters only, all-reduce, clip, step."""
        if name not in self.opts:
            raise TrainingError(f"training_step used optimizer {name!r}, but the method has {sorted(self.opts)}; "
                                f"add it to {type(self.method).__name__}.optimizers")
        o = self.opts[name]
        params = [p for p in o.params if p.requires_grad]
        value = loss.detach().float().reshape(1)
        if self.world > 1:
            value = dist.all_reduce_sum(value.clone()) / self.world
        if not math.isfinite(float(value)):
            self._raise_nonfinite(f"loss of optimizer {name!r} is {float(value)}", step, o)
        if not loss.requires_grad or not params:
            raise TrainingError(f"the loss of optimizer {name!r} does not depend on any of its trainable "
                                f"parameters at step {step}; check what {type(self.method).__name__} optimizes")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads):
            p.grad = g
        dist.all_reduce_grads(params)
        if o.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, o.clip)
            if not math.isfinite(float(norm)):
                self._raise_nonfinite(f"gradient norm of optimizer {name!r} is {float(norm)}", step, o)
        o.opt.step()
        for p in params:
            p.grad = None

    def train_step(self, step: int) -> dict[str, float]:
        """One global step: the method's updates in order, then EMA. Returns the recorded scalars."""
        for o in self.opts.values():
            set_lr(o.opt, lr_factor(o.schedule, step, self.total_steps or 1))
        if not self.net.training:                      # a recursive train() costs ~1 us per module
            self.net.train()
        self._records = {}
        for name, loss in updates_of(self.method.training_step(self, step)):
            self._update(name, loss, step)
        if self.world > 1 and self._buffers:           # BatchNorm statistics: the ranks' average
            flat = torch.cat([b.reshape(-1).float() for b in self._buffers])
            flat = dist.all_reduce_sum(flat) / self.world
            off = 0
            with torch.no_grad():
                for b in self._buffers:
                    b.copy_(flat[off:off + b.numel()].view_as(b))
                    off += b.numel()
        if self.ema is not None:
            self.ema.update(self.net)
        self.step = step + 1
        return self._reduced_records()

    def _reduced_records(self) -> dict[str, float]:
        if not self._records:
            return {}
        keys = sorted(self._records)
        vals = torch.stack([self._records[k].cpu() for k in keys])
        if self.world > 1:
            vals = dist.all_reduce_sum(vals) / self.world
        return dict(zip(keys, vals.tolist()))

    def _raise_nonfinite(self, what: str, step: int, o: _Opt) -> None:
        ck = self.state.last_step
        where = (f"the last good checkpoint (step {ck}) is in {self.out_dir / 'ckpt'}"
                 if ck is not None and self.out_dir is not None else "no checkpoint was written")
        raise TrainingError(f"{what} at step {step}; lower {o.lr_key} (now {o.opt.param_groups[0]['lr']:.3g}) "
                            f"or set train.clip_grad; {where}")

    def hooks(self, name: str, *args: Any) -> None:
        for cb in self.callbacks_and_method():
            fn = getattr(cb, name, None)
            if fn is not None:
                fn(self, *args)

    def fit(self, steps: int | None = None, resume: bool = False) -> dict[str, Any]:
        """Train until global step ``steps`` (default: the schedule length), checkpoint, evaluate.

        ``resume=True`` continues from ``out_dir``'s checkpoint when there is one (else starts fresh).
        Writes ``metrics.jsonl``, checkpoints and ``final.json`` under ``out_dir`` (rank 0) and returns
        the final.json dict.
        """
        t_fit = time.perf_counter()
        if resume and self.out_dir is not None and self.state.exists():
            self.load_checkpoint()
        if type(self.method) is Supervised:  # labels / outputs / loss / metrics fit: one line, not a traceback
            check_tasks(self.model, self.tasks, self.device)
        self.run(self.total_steps if steps is None else steps)
        if self.out_dir is not None and self.state.last_step != self.step:  # same decision on every rank
            self.save_checkpoint()
        if self.stop_signal:
            raise signals.interrupted(self)
        final = self.log.final(self._eval_and_log(), time.perf_counter() - t_fit)
        dist.barrier()
        self.hooks("on_fit_end", final)
        return final

    def run(self, until: int) -> int:
        """Train from the current step until global step ``until`` (or a hook sets ``should_stop``),
        logging, evaluating and checkpointing on the configured cadence; returns the step reached."""
        c = self.config
        self._check_train_data()
        stop = int(until)
        if stop < 0:
            raise ConfigError(f"--steps must be >= 0, got {stop}")
        self.should_stop = False
        self.log.prepare()
        self.hooks("on_fit_start")
        bar = self.log.progress(self.step, stop)
        try:
            for step in range(self.step, stop):
                self.hooks("on_step_start", step)
                t0 = time.perf_counter()
                values = self.train_step(step)
                n = sum(self.batch_size(self.tasks[ti]) for ti, _ in self.active_tasks(step))
                logs = {"step": self.step, "values": values,
                        "lr": {k: o.opt.param_groups[0]["lr"] for k, o in self.opts.items()}}
                self.log.step(logs, time.perf_counter() - t0, n, stop, bar)
                self.hooks("on_step_end", self.step, logs)
                if c.eval_every and self.step % c.eval_every == 0 and self.step != stop:
                    self._eval_and_log()
                if (self.out_dir is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0
                        and self.step != stop):
                    self.save_checkpoint()
                self.stop_signal = signals.stop_requested(self.device)
                if self.should_stop or self.stop_signal:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self.step

    # ------------------------------------------------------------------------------ evaluation
    def _eval_and_log(self) -> dict[str, dict[str, float]]:
        res = self.evaluate()
        self.log.eval(res)
        self.last_eval = res
        self.hooks("on_eval_end", self.step, res)
        return res

    @torch.no_grad()
    def evaluate(self, use_ema: bool = True, tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """``{task: {"loss": ..., metric: ...}}`` on each task's eval data, with the EMA weights if any.

        Sharded over ranks under torch.distributed; every rank returns the same numbers.
        """
        was_training = self.net.training
        out: dict[str, dict[str, float]] = {}
        todo = [t for t in self.tasks if (t.eval_data is not None or t.evaluate is not None)
                and (tasks is None or t.name in tasks)]
        if not todo:
            return out
        ema = self.ema if use_ema else None
        with (ema.swapped_into(self.net) if ema is not None else _nothing()):
            self.net.eval()
            try:
                for task in todo:
                    out[task.name] = evaluate_task(task, self.model, self.device, self.config.eval_batch_size)
            finally:
                self.net.train(was_training)
        return out

    # ----------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint (rank 0; every rank must call it). Refuses to save non-finite weights."""
        return self.state.save(path)

    def load_checkpoint(self, path: str | Path | None = None, *, weights_only: bool = False,
                        check_config: bool = True) -> int:
        """Restore a checkpoint (``path`` or ``out_dir/ckpt``); returns its step.

        With ``weights_only`` only the model (and EMA) weights are loaded, e.g. for evaluation.
        Otherwise optimizers, step, RNG states and the method's / callbacks' / tasks' state are restored
        too, and the stored config must equal this run's (apart from run-length keys such as
        ``train.steps``).
        """
        step = self.state.load(path, weights_only=weights_only, check_config=check_config)
        self._perm.clear()
        return step


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None
