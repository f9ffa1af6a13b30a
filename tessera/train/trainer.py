"""The one trainer: several tasks, one model, exact resume, EMA evaluation, data parallel.

>>> import torch
>>> from torch import nn
>>> from tessera.train import Trainer, Task, TrainConfig
>>> x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
>>> cfg = TrainConfig(steps=5, batch_size=16, log_every=0, checkpoint_every=0, progress="off")
>>> final = Trainer(nn.Linear(4, 3), [Task("toy", train=(x, y), eval=(x, y))], cfg).fit()
>>> sorted(final["tasks"]["toy"])
['accuracy', 'loss']

Determinism. The data order is a pure function of ``(seed, task, step)``: task ``t`` at its ``k``-th
batch uses epoch ``e = k // batches_per_epoch`` of a permutation drawn from a generator seeded with
``(seed, t, e)`` (the last partial batch of an epoch is dropped). The LR is a pure function of the step.
The checkpoint stores model, optimizer, EMA and every rank's RNG state, so stopping at step 15 and
resuming to 30 reproduces a straight 30-step run bit for bit (same device and world size).

Data parallel. When ``torch.distributed`` is initialized (``torchrun``), every rank takes its slice of
each global batch, gradients are averaged over ranks with one flat all-reduce per step (the same
average DDP computes; it works with per-task heads, custom ``Task.forward`` and several forwards per
step, which the ``DistributedDataParallel`` wrapper does not allow), floating-point buffers (BatchNorm
statistics) are averaged in the same collective, evaluation is sharded and reduced, and only rank 0
writes files.

Hooks. ``callbacks`` are objects with any of ``on_fit_start(trainer)``, ``on_step_end(trainer, step,
logs)``, ``on_eval_end(trainer, step, metrics)``, ``on_fit_end(trainer, final)``, or plain callables
used as ``on_step_end``. A hook may edit parameters between steps or set ``trainer.should_stop``.
"""
from __future__ import annotations

import json
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from .. import __version__
from ..config import to_dict
from ..errors import CheckpointError, ConfigError, TrainingError
from ..io import atomic_write_bytes, save_json
from . import dist
from .checkpoint import (capture_rng, load_checkpoint, load_optimizer, optimizer_tensors,
                         restore_rng, save_checkpoint)
from .config import TrainConfig, config_diff
from .ema import EMA
from .optim import build_optimizer, lr_factor, param_groups_for, set_lr
from .task import Task

__all__ = ["Trainer", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _mix(*xs: int) -> int:
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0x7FFFFFFFFFFFFFFF
    return h


def _to(x: Any, device: torch.device) -> Any:
    if torch.is_tensor(x):
        return x.to(device, non_blocking=True)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    if isinstance(x, dict):
        return {k: _to(v, device) for k, v in x.items()}
    return x


class _Hooks:
    def __init__(self, callbacks: Iterable[Any]):
        self.cbs = list(callbacks)

    def __call__(self, name: str, *args: Any) -> None:
        for cb in self.cbs:
            fn = getattr(cb, name, None)
            if fn is None and name == "on_step_end" and callable(cb) and not hasattr(cb, "on_fit_start"):
                fn = cb
            if fn is not None:
                fn(*args)


class Trainer:
    """Train ``model`` on ``tasks`` with ``config``; write metrics, checkpoints and final.json to ``out_dir``.

    Args:
        model: any ``nn.Module``; ``Task.forward(model, x)`` (default ``model(x)``) produces outputs.
        tasks: one or more :class:`Task` with unique names.
        config: :class:`TrainConfig`.
        out_dir: run directory (``metrics.jsonl``, ``ckpt/``, ``final.json``); None writes nothing.
        param_groups: optimizer parameter groups (tensors or dicts, a dict may set its own ``lr``);
            default: all trainable parameters of the model and the task heads, with biases and norm
            weights exempt from weight decay.
        callbacks: hooks, see the module docstring.
        run_config: the full configuration to store in checkpoints and final.json and to compare
            on resume (default: ``{"train": config}``).
        device: overrides ``config.device``.
    """

    def __init__(self, model: nn.Module, tasks: Sequence[Task], config: TrainConfig,
                 out_dir: str | Path | None = None, param_groups: Iterable[Any] | None = None,
                 callbacks: Iterable[Any] = (), run_config: Any = None,
                 device: str | torch.device | None = None):
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
        # stored as {"train": ...} when no full run config is given, so keys read "train.optim.lr"
        self.run_config = to_dict(run_config) if run_config is not None else {"train": to_dict(config)}

        self.model = model.to(self.device)
        heads = nn.ModuleDict({t.name: t.head for t in self.tasks if t.head is not None})
        self.net = nn.ModuleDict({"model": self.model, "heads": heads}).to(self.device)
        dist.broadcast_module(self.net)
        if self.world > 1:  # ranks draw different dropout masks
            torch.manual_seed(_mix(config.seed, 7919, self.rank))

        groups = list(param_groups) if param_groups is not None else param_groups_for(
            self.net, config.optim.weight_decay, config.optim.no_decay_1d)
        self.optimizer = build_optimizer(groups, config.optim)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self._buffers = [b for b in self.net.buffers() if b.is_floating_point()]
        self.ema = EMA(self.net, config.ema.decay, config.ema.warmup) if config.ema.enabled else None

        self.step = 0
        self.total_steps = self._total_steps() if all(t.train_data is not None for t in self.tasks) else None
        self.should_stop = False
        self.hooks = _Hooks(callbacks)
        self._perm: dict[int, tuple[int, torch.Tensor]] = {}
        self._train_seconds = 0.0
        self._train_samples = 0
        self.last_eval: dict[str, dict[str, float]] = {}
        self._ckpt_step: int | None = None
        self._metrics_ready = False

    # ------------------------------------------------------------------------------------ data
    def batch_size(self, task: Task) -> int:
        return task.batch_size or self.config.batch_size

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
        """``[(task index, that task's batch number)]`` trained at global ``step``."""
        n = len(self.tasks)
        if n == 1 or self.config.multitask == "sum":
            return [(i, step) for i in range(n)]
        return [(step % n, step // n)]

    def batch_indices(self, ti: int, k: int) -> torch.Tensor:
        """This rank's sample indices of task ``ti``'s ``k``-th batch (pure function of seed, ti, k)."""
        task = self.tasks[ti]
        n, b = len(task.train_data), self.batch_size(task)
        epoch, j = divmod(k, n // b)
        cached = self._perm.get(ti)
        if cached is None or cached[0] != epoch:
            g = torch.Generator().manual_seed(_mix(self.config.seed, ti, epoch))
            cached = (epoch, torch.randperm(n, generator=g))
            self._perm[ti] = cached
        idx = cached[1][j * b:(j + 1) * b]                        # (B,) global batch
        per = b // self.world
        return idx[self.rank * per:(self.rank + 1) * per]          # (B / W,) this rank's shard

    # ----------------------------------------------------------------------------------- train
    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step at global ``step``; returns ``{task: loss}`` (averaged over ranks)."""
        lr = set_lr(self.optimizer, lr_factor(self.config.schedule, step, self.total_steps))
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        active = self.active_tasks(step)
        losses = []
        for ti, k in active:
            task = self.tasks[ti]
            x, y = task.train_data[self.batch_indices(ti, k)]
            x, y = _to(x, self.device), _to(y, self.device)
            if task.transform is not None:
                x = task.transform(x)
            loss = task.loss_fn(task.outputs(self.model, x), y)
            (loss * task.weight if task.weight != 1.0 else loss).backward()
            losses.append(loss.detach().float().reshape(1))
        extra = torch.cat(losses + [b.reshape(-1).float() for b in self._buffers]) if self.world > 1 else torch.cat(losses)
        extra = dist.all_reduce_grads(self.params, extra)
        if self.world > 1:
            extra = extra / self.world
            off = len(losses)
            with torch.no_grad():
                for b in self._buffers:
                    b.copy_(extra[off:off + b.numel()].view_as(b))
                    off += b.numel()
        vals = extra[:len(losses)].tolist()
        for (ti, _), v in zip(active, vals):
            if not math.isfinite(v):
                self._raise_nonfinite(f"loss is {v}", step, self.tasks[ti].name, lr)
        if self.config.clip_grad > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad)
            if not math.isfinite(float(norm)):
                self._raise_nonfinite(f"gradient norm is {float(norm)}", step, self.tasks[active[0][0]].name, lr)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.net)
        self.step = step + 1
        return {self.tasks[ti].name: v for (ti, _), v in zip(active, vals)}

    def _raise_nonfinite(self, what: str, step: int, task: str, lr: float) -> None:
        where = (f"the last good checkpoint (step {self._ckpt_step}) is in {self.out_dir / 'ckpt'}"
                 if self._ckpt_step is not None and self.out_dir is not None else "no checkpoint was written")
        raise TrainingError(f"{what} at step {step} (task {task!r}); lower train.optim.lr (now {lr:.3g}) "
                            f"or set train.clip_grad; {where}")

    def fit(self, steps: int | None = None) -> dict[str, Any]:
        """Train until global step ``steps`` (default: the schedule length), checkpoint, evaluate.

        Writes ``metrics.jsonl``, checkpoints and ``final.json`` under ``out_dir`` (rank 0) and
        returns the final.json dict.
        """
        t_fit = time.perf_counter()
        self._prepare_metrics_file()
        self.hooks("on_fit_start", self)
        self.run(self.total_steps if steps is None else steps)
        if self.out_dir is not None and self._ckpt_step != self.step:  # same decision on every rank
            self.save_checkpoint()
        final_metrics = self._eval_and_log()
        final = {
            "step": self.step,
            "tasks": final_metrics,
            "ema": self.ema is not None,
            "wall_seconds": round(time.perf_counter() - t_fit, 3),
            "train_seconds": round(self._train_seconds, 3),
            "samples_per_s": round(self._train_samples / max(self._train_seconds, 1e-9), 2),
            "device": str(self.device),
            "world_size": self.world,
            "version": __version__,
            "config": self.run_config,
        }
        if self.out_dir is not None and self.is_main:
            save_json(self.out_dir / "final.json", final)
        dist.barrier()
        self.hooks("on_fit_end", self, final)
        return final

    def run(self, until: int) -> int:
        """Train from the current step until global step ``until`` (or a hook sets ``should_stop``),
        logging, evaluating and checkpointing on the configured cadence; returns the step reached.

        Unlike :meth:`fit` it does no final checkpoint / evaluation, so algorithms that alternate
        training with their own work (e.g. MUiR's generations) can call it repeatedly.
        """
        c = self.config
        self._check_train_data()
        stop = int(until)
        if stop < 0:
            raise ConfigError(f"--steps must be >= 0, got {stop}")
        start = self.step
        self.should_stop = False
        self._prepare_metrics_file()
        bar = self._progress(start, stop)
        win_loss: dict[str, list[float]] = {}
        win_t, win_n = 0.0, 0
        try:
            for step in range(start, stop):
                t0 = time.perf_counter()
                losses = self.train_step(step)
                dt = time.perf_counter() - t0
                n = sum(self.batch_size(self.tasks[ti]) for ti, _ in self.active_tasks(step))
                self._train_seconds += dt
                self._train_samples += n
                win_t += dt
                win_n += n
                for k, v in losses.items():
                    win_loss.setdefault(k, []).append(v)
                logs = {"step": self.step, "losses": losses, "lr": self.optimizer.param_groups[0]["lr"]}
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
                if c.log_every and (self.step % c.log_every == 0 or self.step == stop):
                    for k, vs in win_loss.items():
                        self._log({"kind": "train", "step": self.step, "task": k, "loss": sum(vs) / len(vs),
                                   "lr": logs["lr"], "samples_per_s": round(win_n / max(win_t, 1e-9), 2),
                                   "epoch": round(self._epoch(), 4)})
                    win_loss, win_t, win_n = {}, 0.0, 0
                self.hooks("on_step_end", self, self.step, logs)
                if c.eval_every and self.step % c.eval_every == 0 and self.step != stop:
                    self._eval_and_log()
                if (self.out_dir is not None and c.checkpoint_every and self.step % c.checkpoint_every == 0
                        and self.step != stop):
                    self.save_checkpoint()
                if self.should_stop:
                    break
        finally:
            if bar is not None:
                bar.close()
        return self.step

    def _epoch(self) -> float:
        """Passes over the first task's training data so far."""
        t0, n = self.tasks[0], len(self.tasks)
        k = -(-self.step // n) if n > 1 and self.config.multitask == "round_robin" else self.step
        return k / (len(t0.train_data) // self.batch_size(t0))

    def _progress(self, start: int, stop: int):
        mode = self.config.progress
        if not self.is_main or mode == "off" or stop <= start:
            return None
        tty = sys.stderr.isatty()
        if mode == "auto" and not tty and stop - start < 1000:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=stop, initial=start, desc="train", unit="step", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5 if tty else 60.0, maxinterval=10.0 if tty else 60.0,
                    leave=tty)

    # --------------------------------------------------------------------------------- logging
    def _metrics_path(self) -> Path | None:
        return self.out_dir / "metrics.jsonl" if self.out_dir is not None else None

    def _prepare_metrics_file(self) -> None:
        """Fresh run: empty metrics.jsonl. Resumed run: drop lines past the resumed step."""
        p = self._metrics_path()
        if p is None or not self.is_main or self._metrics_ready:
            return
        self._metrics_ready = True
        keep = []
        if self.step > 0 and p.is_file():
            for line in p.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= self.step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
        atomic_write_bytes(p, "".join(s + "\n" for s in keep).encode())

    def _log(self, rec: dict[str, Any]) -> None:
        p = self._metrics_path()
        if p is None or not self.is_main:
            return
        with open(p, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def _eval_and_log(self) -> dict[str, dict[str, float]]:
        res = self.evaluate()
        for name, m in res.items():
            self._log({"kind": "eval", "step": self.step, "task": name, "ema": self.ema is not None, **m})
        self.last_eval = res
        self.hooks("on_eval_end", self, self.step, res)
        return res

    # ------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, use_ema: bool = True, tasks: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
        """``{task: {"loss": ..., metric: ...}}`` on each task's eval data, with the EMA weights if any.

        Sharded over ranks under torch.distributed; every rank returns the same numbers.
        """
        was_training = self.net.training
        ctx = self.ema.swapped_into(self.net) if (use_ema and self.ema is not None) else nullcontext()
        out: dict[str, dict[str, float]] = {}
        with ctx:
            self.net.eval()
            try:
                for task in self.tasks:
                    if task.eval_data is None or (tasks is not None and task.name not in tasks):
                        continue
                    out[task.name] = self._evaluate_task(task)
            finally:
                self.net.train(was_training)
        return out

    def _evaluate_task(self, task: Task) -> dict[str, float]:
        data = task.eval_data
        n = len(data)
        shard = self.world > 1 and n >= self.world        # tiny sets: every rank evaluates all of it
        per = -(-n // self.world) if shard else n
        r = self.rank if shard else 0
        lo, hi = min(n, r * per), min(n, (r + 1) * per)
        mean_ms = [m for m in task.metric_objs if m.kind == "mean"]
        glob_ms = [m for m in task.metric_objs if m.kind != "mean"]
        acc = torch.zeros(2 + 2 * len(mean_ms), dtype=torch.float64)
        outs, ys = [], []
        bs = self.config.eval_batch_size
        for i in range(lo, hi, bs):
            x, y = data[torch.arange(i, min(hi, i + bs))]
            x, y = _to(x, self.device), _to(y, self.device)
            o = task.outputs(self.model, x)
            nb = len(y)
            acc[0] += float(task.loss_fn(o, y)) * nb
            acc[1] += nb
            for j, m in enumerate(mean_ms):
                v = m.fn(o, y)
                acc[2 + 2 * j] += float(v.sum())
                acc[3 + 2 * j] += v.numel()
            if glob_ms:
                outs.append(o.float().cpu())
                ys.append(y.cpu())
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        if shard:
            acc = dist.all_reduce_sum(acc.to(comm)).cpu()
        res = {"loss": float(acc[0] / max(acc[1], 1))}
        for j, m in enumerate(mean_ms):
            v = float(acc[2 + 2 * j] / max(acc[3 + 2 * j], 1))
            res[m.name] = m.finalize(v) if m.finalize else v
        if glob_ms:
            o_all, y_all = torch.cat(outs), torch.cat(ys)      # every rank has >= 1 sample when sharded
            if shard:
                o_all = dist.all_gather_cat(o_all.to(comm)).cpu()
                y_all = dist.all_gather_cat(y_all.to(comm)).cpu()
            for m in glob_ms:
                v = float(m.fn(o_all, y_all))
                res[m.name] = m.finalize(v) if m.finalize else v
        return res

    # ----------------------------------------------------------------------------- checkpoints
    def _gather_rng(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = capture_rng()
        out: dict[str, torch.Tensor] = {}
        comm = self.device if self.device.type == "cuda" else torch.device("cpu")
        for k, t in tensors.items():
            g = dist.all_gather_cat(t.reshape(1, -1).to(comm)).cpu()   # (W, state bytes)
            for r in range(g.shape[0]):
                out[f"{k}.{r}"] = g[r].clone()
        return out, meta

    def save_checkpoint(self, path: str | Path | None = None) -> Path | None:
        """Write a checkpoint (rank 0; every rank must call it). Refuses to save non-finite weights."""
        if path is None and self.out_dir is None:
            raise CheckpointError("no checkpoint path: give Trainer(out_dir=...) or save_checkpoint(path)")
        path = Path(path) if path is not None else self.out_dir / "ckpt"
        for name, t in self.net.state_dict().items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingError(f"weight {name} is not finite at step {self.step}; not saving it over the "
                                    f"last good checkpoint; lower train.optim.lr or set train.clip_grad")
        rng, rng_meta = self._gather_rng()
        if self.is_main:
            opt_t, opt_meta = optimizer_tensors(self.optimizer)
            state = {
                "step": self.step, "total_steps": self.total_steps, "world_size": self.world,
                "config": self.run_config, "optim": opt_meta, "rng": rng_meta,
                "ema_updates": self.ema.num_updates if self.ema is not None else None,
                "train_seconds": self._train_seconds, "train_samples": self._train_samples,
                "versions": {"tessera": __version__, "torch": torch.__version__},
            }
            save_checkpoint(path, state=state, model=self.net.state_dict(),
                            ema=self.ema.state_tensors() if self.ema is not None else None,
                            optim=opt_t, rng=rng)
        dist.barrier()
        self._ckpt_step = self.step
        return path

    def load_checkpoint(self, path: str | Path | None = None, *, weights_only: bool = False,
                        check_config: bool = True) -> int:
        """Restore a checkpoint (``path`` or ``out_dir/ckpt``); returns its step.

        With ``weights_only`` only the model (and EMA) weights are loaded, e.g. for evaluation.
        Otherwise the optimizer, step and RNG states are restored too, and the stored config must
        equal this run's (apart from run-length keys such as ``train.steps``).
        """
        src = path if path is not None else self.out_dir
        if src is None:
            raise CheckpointError("no checkpoint path: give Trainer(out_dir=...) or load_checkpoint(path)")
        ck = load_checkpoint(src)
        if check_config and not weights_only:
            diff = config_diff(ck.state.get("config", {}), self.run_config)
            if diff:
                shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in diff[:4])
                more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
                raise CheckpointError(f"cannot resume {ck.path}: config differs at {shown}{more}; "
                                      "resume with the original config or start a new --out directory")
        own = self.net.state_dict()
        missing = sorted(set(own) - set(ck.model))
        unexpected = sorted(set(ck.model) - set(own))
        if missing or unexpected:
            what = f"missing keys {missing[:3]}" if missing else f"unexpected keys {unexpected[:3]}"
            raise CheckpointError(f"{ck.path}: model weights do not match the model ({what}); use the same model config")
        for k, v in ck.model.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise CheckpointError(f"{ck.path}: weight {k} has shape {tuple(v.shape)}, the model has "
                                      f"{tuple(own[k].shape)}; use the same model config")
        self.net.load_state_dict(ck.model)
        if self.ema is not None:
            if ck.ema is not None:
                self.ema.load_state(ck.ema, ck.state.get("ema_updates") or 0)
            else:
                self.ema = EMA(self.net, self.config.ema.decay, self.config.ema.warmup)
        if weights_only:
            return ck.step
        load_optimizer(self.optimizer, ck.optim, ck.state["optim"])
        mine = {k.split(".")[0]: v for k, v in ck.rng.items() if k.split(".")[1] == str(self.rank)}
        if not mine:  # more ranks than when saved: derive a distinct state
            torch.manual_seed(_mix(self.config.seed, 7919, self.rank, ck.step))
        restore_rng(mine, ck.state.get("rng"))
        self.step = ck.step
        self._ckpt_step = ck.step
        self._metrics_ready = False
        self._train_seconds = float(ck.state.get("train_seconds", 0.0))
        self._train_samples = int(ck.state.get("train_samples", 0))
        self._perm.clear()
        return ck.step
