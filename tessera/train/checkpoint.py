"""Checkpoints: safetensors for tensors, JSON for everything else, written all-or-nothing.

A checkpoint is a directory (default ``RUN/ckpt/``)::

    model.safetensors   trained module state (``model.*``, ``heads.<task>.*``)
    ema.safetensors     EMA shadow weights (when EMA is on)
    optim.safetensors   optimizer state tensors, keyed ``<optimizer>.<param index>.<name>``
    rng.safetensors     torch RNG state of every rank (``torch.<rank>``, ``cuda.<rank>``)
    extra.safetensors   tensors of the method's, callbacks' and tasks' own state (when they have any)
    state.json          step, config, optimizer structure + scalars, numpy / python RNG, versions

It is built in a temporary sibling directory and renamed into place (:class:`tessera.io.atomic_dir`),
so a crash leaves the previous checkpoint intact. Nothing is pickled; nothing is ``torch.load``-ed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..io import atomic_dir, load_json, load_tensors, save_json, save_tensors

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "find_checkpoint", "optimizer_tensors",
           "load_optimizer", "capture_rng", "restore_rng", "split_state", "join_state", "FORMAT"]

FORMAT = "tessera.train/2"
FORMATS = ("tessera.train/1", FORMAT)   # /1: one optimizer, no method state (read as optimizer "main")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns (all tensors on CPU)."""

    path: Path
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.state["step"])


# ------------------------------------------------------------------------------------- optimizer

def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into flat tensors and a JSON-able structure."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{idx}.{k}"] = v
            else:
                scalars.setdefault(str(idx), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"class": type(opt).__name__, "param_groups": groups, "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    if meta.get("class") != type(opt).__name__:
        raise CheckpointError(f"checkpoint optimizer is {meta.get('class')}, the run uses {type(opt).__name__}; "
                              "resume with the same train.optim.name")
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = t
    for idx, d in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(d)
    groups = meta["param_groups"]
    cur = opt.state_dict()["param_groups"]
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in cur]:
        raise CheckpointError("checkpoint optimizer has different parameter groups than the model; "
                              "resume with the same model and optimizer config")
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------ method / callback state

def split_state(obj: Any, prefix: str = "") -> tuple[dict[str, torch.Tensor], Any]:
    """Split nested dicts / lists of tensors and JSON values into flat tensors + a JSON skeleton.

    Tensors become ``{"__tensor__": key}`` markers in the skeleton; :func:`join_state` inverts it.

    >>> t, meta = split_state({"psi": torch.arange(3), "gen": 4, "best": [torch.ones(1), None]})
    >>> sorted(t), meta["gen"], meta["psi"]
    (['best.0', 'psi'], 4, {'__tensor__': 'psi'})
    >>> join_state(meta, t)["best"][0]
    tensor([1.])
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(v: Any, key: str) -> Any:
        if torch.is_tensor(v):
            tensors[key] = v.detach()
            return {"__tensor__": key}
        if isinstance(v, dict):
            return {str(k): walk(x, f"{key}.{k}" if key else str(k)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{key}.{i}" if key else str(i)) for i, x in enumerate(v)]
        return v

    return tensors, walk(obj, prefix)


def join_state(meta: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split_state`."""
    if isinstance(meta, dict):
        if set(meta) == {"__tensor__"}:
            key = meta["__tensor__"]
            if key not in tensors:
                raise CheckpointError(f"checkpoint lacks tensor {key!r} of a method's state; the checkpoint is "
                                      "incomplete, resume from another one or start a new run")
            return tensors[key]
        return {k: join_state(v, tensors) for k, v in meta.items()}
    if isinstance(meta, list):
        return [join_state(v, tensors) for v in meta]
    return meta


# ------------------------------------------------------------------------------------------- RNG

def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's RNG states: torch (+ CUDA) as tensors, numpy and python as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    meta = {"numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None) -> None:
    if "torch" in tensors:
        torch.set_rng_state(tensors["torch"].to(torch.uint8).cpu())
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"].to(torch.uint8).cpu())
    if meta:
        if "numpy" in meta:
            kind, keys, pos, has_gauss, gauss = meta["numpy"]
            np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
        if "python" in meta:
            v, st, g = meta["python"]
            random.setstate((v, tuple(st), g))


# ------------------------------------------------------------------------------------ save / load

def find_checkpoint(path: str | Path) -> Path | None:
    """``path`` itself if it is a checkpoint; else ``path/ckpt``; also recovers the ``.old`` copy left
    when a crash hit the instant between the two renames of an atomic replace."""
    p = Path(path)
    for cand in (p, p / "ckpt"):
        if (cand / "state.json").is_file():
            return cand
        old = cand.with_name(f".{cand.name}.old")
        if not cand.exists() and (old / "state.json").is_file():
            return old
    return None


def save_checkpoint(path: str | Path, *, state: dict[str, Any], model: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor] | None = None, optim: dict[str, torch.Tensor] | None = None,
                    rng: dict[str, torch.Tensor] | None = None, extra: dict[str, torch.Tensor] | None = None
                    ) -> Path:
    """Write a checkpoint directory atomically (all files or none)."""
    path = Path(path)
    state = {"format": FORMAT, **state}
    with atomic_dir(path) as tmp:
        save_tensors(tmp / "model.safetensors", model)
        if ema is not None:
            save_tensors(tmp / "ema.safetensors", ema)
        if optim is not None:
            save_tensors(tmp / "optim.safetensors", optim)
        if rng:
            save_tensors(tmp / "rng.safetensors", rng)
        if extra:
            save_tensors(tmp / "extra.safetensors", extra)
        save_json(tmp / "state.json", state)  # last: its presence marks a complete checkpoint
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint directory (``path`` or ``path/ckpt``)."""
    found = find_checkpoint(path)
    if found is None:
        raise CheckpointError(f"no checkpoint in {path} (expected {Path(path) / 'ckpt' / 'state.json'}); "
                              "check the run directory, or start a new run without --resume")
    state = load_json(found / "state.json")
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        raise CheckpointError(f"{found / 'state.json'}: not a {FORMAT} checkpoint; point at a tessera run directory")
    model = load_tensors(found / "model.safetensors")
    ema = load_tensors(found / "ema.safetensors") if (found / "ema.safetensors").is_file() else None
    optim = load_tensors(found / "optim.safetensors") if (found / "optim.safetensors").is_file() else {}
    rng = load_tensors(found / "rng.safetensors") if (found / "rng.safetensors").is_file() else {}
    extra = load_tensors(found / "extra.safetensors") if (found / "extra.safetensors").is_file() else {}
    return Checkpoint(found, state, model, ema, optim, rng, extra)
