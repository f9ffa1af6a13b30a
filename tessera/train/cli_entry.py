"""What ``tessera train`` and ``tessera eval`` run: a YAML :class:`RunConfig` -> model + tasks -> Trainer.

``train_main`` works the same in one process and under ``torchrun`` (it joins the process group from
the environment, and leaves it when it created it). Only rank 0 writes files and prints.
"""
from __future__ import annotations

import errno
import shlex
import signal
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..config import from_dict, to_dict
from ..errors import CheckpointError, ConfigError, DataError, TesseraError, TrainingError
from ..io import load_json, save_json
from . import dist
from .checkpoint import find_checkpoint, load_checkpoint
from .config import RunConfig, TaskConfig, load_run_config
from .lock import claim_run_dir
from .preflight import check_tasks
from .signals import Interrupted, graceful_stop
from .task import Task
from .trainer import Trainer, seed_everything

__all__ = ["train_main", "eval_main", "build_run", "load_task_data"]


def load_task_data(tc: TaskConfig, data_root: str | None, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``tessera.data.load_images(tc.dataset, split, root)`` with clear errors (and ``limit_*`` applied)."""
    try:
        from ..data import load_images
    except ImportError as e:
        raise DataError(f"tessera.data cannot be imported ({e}); reinstall tessera") from None
    try:
        x, y = load_images(tc.dataset, split=split, root=data_root)
    except TesseraError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"task {tc.name!r}: cannot load dataset {tc.dataset!r} split {split!r} ({e}); "
                        "set data_root (--set data_root=DIR) or $TESSERA_DATA to a folder holding it") from None
    limit = tc.limit_train if split == tc.split_train else tc.limit_eval
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


def _num_classes(tc: TaskConfig, y: torch.Tensor | None) -> int:
    if tc.num_classes is not None:
        return tc.num_classes
    if y is None or not len(y):
        raise ConfigError(f"task {tc.name!r}: set num_classes (it cannot be inferred without labels)")
    return int(y.max()) + 1


def _slice_logits(n: int):
    def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)[:, :n]                                 # (N, max classes) -> (N, n)
    return forward


def build_run(cfg: RunConfig, train: bool = True) -> tuple[nn.Module, list[Task]]:
    """Load every task's data and create the model. ``train=False`` loads evaluation splits only.

    Several tasks share the model's output layer (sized for the task with the most classes); task
    ``t`` reads the first ``num_classes_t`` logits. For per-task heads or trunks build :class:`Task`
    objects in Python (``Task(head=..., forward=...)``).
    """
    from ..nn import create_model

    loaded = []
    for tc in cfg.tasks:
        tr = load_task_data(tc, cfg.data_root, tc.split_train) if train else None
        ev = load_task_data(tc, cfg.data_root, tc.split_eval) if tc.split_eval else None
        loaded.append((tc, tr, ev))
    classes = [_num_classes(tc, (tr or ev or (None, None))[1]) for tc, tr, ev in loaded]
    kwargs = dict(cfg.model.kwargs)
    kwargs.setdefault("num_classes", max(classes))
    x0 = (loaded[0][1] or loaded[0][2])[0]
    if "in_chans" not in kwargs and torch.is_tensor(x0) and x0.dim() == 4:
        kwargs["in_chans"] = int(x0.shape[1])
    try:
        model = create_model(cfg.model.name, **kwargs)
    except TesseraError:
        raise
    except TypeError as e:
        raise ConfigError(f"config key 'model.kwargs': {e}; check the model's arguments") from None
    tasks = []
    for (tc, tr, ev), nc in zip(loaded, classes):
        fwd = _slice_logits(nc) if len(cfg.tasks) > 1 and nc != kwargs["num_classes"] else None
        tasks.append(Task(tc.name, train=tr, eval=ev, loss=tc.loss, metrics=list(tc.metrics), forward=fwd,
                          weight=tc.weight, info={"dataset": tc.dataset, "num_classes": nc}))
    return model, tasks


def _summary(final: dict[str, Any]) -> str:
    parts = []
    for name, m in final["tasks"].items():
        parts.append(name + " " + " ".join(f"{k}={v:.4f}" for k, v in m.items()))
    return f"step {final['step']}: " + "; ".join(parts)


def _resume_command(config_path: Any, out: Path, steps: int | None, overrides: Sequence[str]) -> str:
    parts = ["tessera", "train", str(config_path), "--out", str(out), "--resume"]
    if steps is not None:
        parts += ["--steps", str(steps)]
    if overrides:
        parts += ["--set", *overrides]
    return " ".join(shlex.quote(p) for p in parts)


def _where(trainer: Trainer | None, out: Path) -> str:
    """Where the last good checkpoint is, truthfully (from the trainer, else from the disk)."""
    step = trainer.state.last_step if trainer is not None else None
    if step is None:
        found = find_checkpoint(out)
        if found is None:
            return "no checkpoint was written"
        try:
            step = int(load_json(found / "state.json")["step"])
        except (TesseraError, KeyError, TypeError, ValueError):
            return f"a checkpoint is in {found}"
    return f"the last good checkpoint (step {step}) is in {out / 'ckpt'}"


def _check_steps(steps: int | None, trainer: Trainer) -> None:
    if steps is None:
        return
    if steps > trainer.total_steps:
        c = trainer.config
        length = f"train.steps={c.steps}" if c.steps is not None else f"train.epochs={c.epochs}"
        raise ConfigError(f"--steps {steps} is past the end of the LR schedule ({trainer.total_steps} steps, from "
                          f"{length}), where the LR stays at its final value; to train longer, lengthen the "
                          f"schedule: --set train.steps={steps}" + (" train.epochs=null" if c.epochs is not None else ""))
    if steps < trainer.step:
        raise ConfigError(f"--steps {steps} is behind the checkpoint, which is at step {trainer.step}; pass a larger "
                          f"--steps (or leave it out to finish the schedule)")


def train_main(config_path: str | Path | None, out: str | Path, steps: int | None = None, resume: bool = False,
               overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """``tessera train CONFIG --out DIR [--steps N] [--resume] [--set k=v ...]``; returns final.json's dict.

    ``steps`` means "train until global step N" (default: the configured ``train.steps`` / ``epochs``,
    which alone fix the LR schedule); a ``steps`` past the schedule's end is refused (lengthen the
    schedule with ``train.steps`` instead). ``resume`` continues ``DIR/ckpt`` and requires the same config
    apart from run-length keys (``train.steps``, ``train.epochs``, logging / eval / checkpoint cadence,
    device, data_root). The run directory is locked for the run's lifetime; SIGINT / SIGTERM stop the run
    at the next step boundary with a checkpoint (:class:`~tessera.train.signals.Interrupted` names the
    command that continues it).
    """
    overrides = list(overrides or [])
    cfg = load_run_config(str(config_path) if config_path is not None else None, overrides)
    out = Path(out)
    if steps is not None and steps < 0:
        raise ConfigError(f"--steps must be >= 0, got {steps}")
    device = dist.select_device(cfg.train.device)
    was_dist = dist.is_dist()
    started = dist.init_from_env(device) and not was_dist
    lock = claim_run_dir(out) if dist.rank() == 0 else None
    trainer: Trainer | None = None
    again = _resume_command(config_path, out, steps, overrides)
    try:
        have = find_checkpoint(out) is not None
        if resume and not have:
            raise CheckpointError(f"--resume: no checkpoint in {out / 'ckpt'}; run without --resume to start a new run")
        if not resume and (have or (out / "final.json").exists()):
            raise CheckpointError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        with graceful_stop():
            seed_everything(cfg.train.seed)
            model, tasks = build_run(cfg)
            trainer = Trainer(model, tasks, cfg.train, out_dir=out, run_config=cfg, device=device)
            if resume:
                trainer.load_checkpoint()
            _check_steps(steps, trainer)
            if trainer.is_main:
                save_json(out / "config.json", to_dict(cfg))
            final = trainer.fit(steps)
        if trainer.is_main:
            print(_summary(final) + f"  ({final['samples_per_s']:.0f} samples/s) -> {out / 'final.json'}", flush=True)
        return final
    except Interrupted as e:
        raise Interrupted(f"{e}; continue with: {again}", e.signum, e.step) from None
    except KeyboardInterrupt:
        at = f" at step {trainer.step}" if trainer is not None else " before training started"
        raise Interrupted(f"interrupted{at}; {_where(trainer, out)}" + (f"; continue with: {again}" if
                          find_checkpoint(out) else ""), signal.SIGINT, trainer.step if trainer else None) from None
    except TesseraError:
        raise
    except Exception as e:
        raise _crash(e, trainer, out, again) from e
    finally:
        if lock is not None:
            lock.release()
        if started:
            dist.destroy()


def _crash(e: Exception, trainer: Trainer | None, out: Path, again: str) -> TrainingError:
    """A one-line TrainingError for an unexpected exception: what, at which step, what is saved."""
    what = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        fix = "free disk space (or raise the quota / file-size limit), then continue with: " + again
    elif isinstance(e, MemoryError) or "out of memory" in what.lower():
        fix = "lower train.batch_size (or eval_batch_size), then continue with: " + again
    else:
        fix = "fix the cause, then continue with: " + again
    if trainer is None:
        return TrainingError(f"training failed before it started ({what}); {fix}")
    return TrainingError(f"training failed at step {trainer.step} ({what}); {_where(trainer, out)}; {fix}")


def eval_main(run_dir: str | Path, json_path: str | Path | None = None, device: str | None = None) -> dict[str, Any]:
    """``tessera eval RUN_DIR [--json FILE] [--device D]``: evaluate a run's checkpoint (EMA weights when
    trained with EMA); the checkpoint is verified first, and a corrupt latest one falls back to the
    previous one with a warning."""
    ck = load_checkpoint(run_dir)
    try:
        cfg = from_dict(RunConfig, ck.state.get("config"))
    except ConfigError as e:
        raise CheckpointError(f"{ck.path / 'state.json'} holds a config this tessera cannot use ({e}); evaluate "
                              "it with the tessera version that wrote it") from None
    if device is not None:
        cfg.train.device = device
    dist.select_device(cfg.train.device)
    model, tasks = build_run(cfg, train=False)
    trainer = Trainer(model, tasks, cfg.train, out_dir=None, run_config=cfg)
    check_tasks(trainer.model, trainer.tasks, trainer.device)
    step = trainer.load_checkpoint(ck.path, weights_only=True)
    res = trainer.evaluate()
    result = {"run_dir": str(run_dir), "step": step, "tasks": res, "ema": trainer.ema is not None,
              "device": str(trainer.device), "config": to_dict(cfg)}
    if trainer.is_main:
        if json_path:
            save_json(json_path, result)
        print(_summary(result), flush=True)
    return result
