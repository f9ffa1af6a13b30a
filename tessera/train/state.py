"""A Trainer's whole state to and from a checkpoint directory (see :mod:`.checkpoint` for the files).

Saved: the net's state (model, task heads, method modules), the EMA shadow, every named optimizer's
state, every rank's RNG state, the step, the logging counters, and the ``state_dict()`` of the
method, of each callback and of each task's stateful ``forward`` / ``evaluate`` (e.g. a language
model's carried hidden state), so that a resumed run continues bit for bit.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..errors import CheckpointError, TrainingError
from . import dist
from .checkpoint import (capture_rng, find_checkpoint, join_state, load_checkpoint, load_optimizer,
                         optimizer_tensors, restore_rng, save_checkpoint, split_state)
from .config import config_diff
from .ema import EMA

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["TrainerState"]


def _stateful(trainer: "Trainer") -> dict[str, Any]:
    """``{key: object with state_dict/load_state_dict}``: method, callbacks, tasks' forward/evaluate."""
    out: dict[str, Any] = {}
    for key, obj in [("method", trainer.method)] + [(f"callback{i}.{type(c).__name__}", c)
                                                    for i, c in enumerate(trainer.callbacks)]:
        if hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
            out[key] = obj
    for t in trainer.tasks:
        for part in ("forward", "evaluate", "transform"):
            obj = getattr(t, part)
            if obj is not None and hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
                out[f"task.{t.name}.{part}"] = obj
    return out


class TrainerState:
    """Checkpoint glue of one Trainer; ``last_step`` is the step of the last checkpoint written/read."""

    def __init__(self, trainer: "Trainer"):
        self.tr = trainer
        self.last_step: int | None = None

    def exists(self, path: str | Path | None = None) -> bool:
        src = path if path is not None else self.tr.out_dir
        return src is not None and find_checkpoint(src) is not None

    def _gather_rng(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = capture_rng()
        out: dict[str, torch.Tensor] = {}
        comm = self.tr.device if self.tr.device.type == "cuda" else torch.device("cpu")
        for k, t in tensors.items():
            g = dist.all_gather_cat(t.reshape(1, -1).to(comm)).cpu()   # (W, state bytes)
            for r in range(g.shape[0]):
                out[f"{k}.{r}"] = g[r].clone()
        return out, meta

    def save(self, path: str | Path | None = None) -> Path:
        tr = self.tr
        if path is None and tr.out_dir is None:
            raise CheckpointError("no checkpoint path: give Trainer(out_dir=...) or save_checkpoint(path)")
        path = Path(path) if path is not None else tr.out_dir / "ckpt"
        sd = tr.net.state_dict()
        for name, t in sd.items():
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingError(f"weight {name} is not finite at step {tr.step}; not saving it over the "
                                    f"last good checkpoint; lower train.optim.lr or set train.clip_grad")
        rng, rng_meta = self._gather_rng()
        # every rank: a state_dict may gather its ranks' parts (e.g. a carried LM state per stream shard)
        extra, extra_meta = split_state({k: obj.state_dict() for k, obj in _stateful(tr).items()})
        if tr.is_main:
            optim: dict[str, torch.Tensor] = {}
            optim_meta: dict[str, Any] = {}
            for name, o in tr.opts.items():
                t, m = optimizer_tensors(o.opt)
                optim.update({f"{name}.{k}": v for k, v in t.items()})
                optim_meta[name] = m
            state = {
                "step": tr.step, "total_steps": tr.total_steps, "world_size": tr.world,
                "config": tr.run_config, "optimizers": optim_meta, "rng": rng_meta, "extra": extra_meta,
                "ema_updates": tr.ema.num_updates if tr.ema is not None else None,
                "train_seconds": tr.log.train_seconds, "train_samples": tr.log.train_samples,
                "log_window": tr.log._win,    # values since the last metrics line: a resumed line averages the same
                "versions": {"tessera": __version__, "torch": torch.__version__},
            }
            save_checkpoint(path, state=state, model=sd, ema=tr.ema.state_tensors() if tr.ema is not None else None,
                            optim=optim, rng=rng, extra=extra)
        dist.barrier()
        self.last_step = tr.step
        return path

    def load(self, path: str | Path | None = None, *, weights_only: bool = False, check_config: bool = True) -> int:
        tr = self.tr
        src = path if path is not None else tr.out_dir
        if src is None:
            raise CheckpointError("no checkpoint path: give Trainer(out_dir=...) or load_checkpoint(path)")
        ck = load_checkpoint(src, quarantine=path is None and tr.is_main and not weights_only)
        if check_config and not weights_only:
            diff = config_diff(ck.state.get("config", {}), tr.run_config)
            if diff:
                shown = ", ".join(f"{k} ({a!r} -> {b!r})" for k, a, b in diff[:4])
                more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
                raise CheckpointError(f"cannot resume {ck.path}: config differs at {shown}{more}; "
                                      "resume with the original config or start a new --out directory")
        own = tr.net.state_dict()
        missing = sorted(set(own) - set(ck.model))
        unexpected = sorted(set(ck.model) - set(own))
        if missing or unexpected:
            what = f"missing keys {missing[:3]}" if missing else f"unexpected keys {unexpected[:3]}"
            raise CheckpointError(f"{ck.path}: model weights do not match the model ({what}); use the same model config")
        for k, v in ck.model.items():
            if tuple(v.shape) != tuple(own[k].shape):
                raise CheckpointError(f"{ck.path}: weight {k} has shape {tuple(v.shape)}, the model has "
                                      f"{tuple(own[k].shape)}; use the same model config")
        tr.net.load_state_dict(ck.model)
        if tr.ema is not None:
            if ck.ema is not None:
                tr.ema.load_state(ck.ema, ck.state.get("ema_updates") or 0)
            else:
                tr.ema = EMA(tr.net, tr.config.ema.decay, tr.config.ema.warmup)
        if weights_only:
            return ck.step
        self._load_optimizers(ck)
        if ck.state.get("extra") is not None:
            states = join_state(ck.state["extra"], ck.extra)
            for key, obj in _stateful(tr).items():
                if key in states:
                    obj.load_state_dict(states[key])
        mine = {k.split(".")[0]: v for k, v in ck.rng.items() if k.split(".")[1] == str(tr.rank)}
        if not mine:  # more ranks than when saved: derive a distinct state
            from .trainer import mix_seed
            torch.manual_seed(mix_seed(tr.config.seed, 7919, tr.rank, ck.step))
        restore_rng(mine, ck.state.get("rng"))
        tr.step = ck.step
        self.last_step = ck.step
        tr.log.ready = False
        tr.log.train_seconds = float(ck.state.get("train_seconds", 0.0))
        tr.log.train_samples = int(ck.state.get("train_samples", 0))
        tr.log._win = {k: [float(v) for v in vs] for k, vs in (ck.state.get("log_window") or {}).items()}
        return ck.step

    def _load_optimizers(self, ck: Any) -> None:
        tr = self.tr
        metas = ck.state.get("optimizers")
        if metas is None:                                   # format /1: one optimizer, unprefixed keys
            metas = {"main": ck.state["optim"]}
            tensors = {"main": ck.optim}
        else:
            tensors = {n: {k[len(n) + 1:]: v for k, v in ck.optim.items() if k.startswith(n + ".")} for n in metas}
        if set(metas) != set(tr.opts):
            raise CheckpointError(f"{ck.path}: checkpoint has optimizers {sorted(metas)}, the run has "
                                  f"{sorted(tr.opts)}; resume with the same method")
        for name, o in tr.opts.items():
            load_optimizer(o.opt, tensors[name], metas[name])
