"""Checkpoints: safetensors for tensors, JSON for everything else, checksummed, the previous one kept.

A run directory holds the latest checkpoint ``RUN/ckpt/`` and the one before it ``RUN/ckpt.prev/``::

    model.safetensors   trained module state (``model.*``, ``heads.<task>.*``)
    ema.safetensors     EMA shadow weights (when EMA is on)
    optim.safetensors   optimizer state tensors, keyed ``<optimizer>.<param index>.<name>``
    rng.safetensors     torch RNG state of every rank (``torch.<rank>``, ``cuda.<rank>``)
    extra.safetensors   tensors of the method's, callbacks' and tasks' own state (when they have any)
    state.json          step, config, optimizer structure + scalars, numpy / python RNG, versions,
                        ``files``: the sha256 and size of every file above, ``state_sha256``: its own

A checkpoint is built in a temporary sibling folder (``.ckpt.tmp-*``), then ``ckpt`` becomes
``ckpt.prev`` and the new folder becomes ``ckpt`` (renames), so a crash at any instant leaves at least
one complete checkpoint. :func:`load_checkpoint` verifies every checksum; when the latest checkpoint is
corrupt or incomplete it warns (:class:`~tessera.errors.TesseraWarning`) and uses ``ckpt.prev``; a file
that is missing or altered is never loaded silently. Nothing is pickled; nothing is ``torch.load``-ed.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError, TesseraWarning
from ..io import (atomic_write_bytes, discard_dir, fsync_dir, json_default, load_json, save_json,
                  tensors_from_bytes, tensors_to_bytes)

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "find_checkpoint", "optimizer_tensors",
           "load_optimizer", "capture_rng", "restore_rng", "split_state", "join_state", "verify_checkpoint",
           "FORMAT", "PREV_SUFFIX", "TMP_PREFIX"]

FORMAT = "tessera.train/3"             # /2 + a sha256 per file and of state.json itself
# written before checksums: loaded with a warning, unverified. /1: one optimizer, no method state (read
# as optimizer "main"); /2: named optimizers, method state
LEGACY_FORMATS = ("tessera.train/1", "tessera.train/2")
PREV_SUFFIX = ".prev"
TMP_PREFIX = ".tmp-"                    # .ckpt.tmp-XXXX: a checkpoint being written (stale after a kill)
TENSOR_FILES = ("model", "ema", "optim", "rng", "extra")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns (all tensors on CPU). ``fallback``: why the newer checkpoint
    in ``fallback[0]`` was skipped, when one was."""

    path: Path
    state: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None = None
    optim: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: dict[str, torch.Tensor] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    fallback: tuple[Path, str] | None = None

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

def _state_digest(state: dict[str, Any]) -> str:
    body = {k: v for k, v in state.items() if k != "state_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_checkpoint(path: str | Path, *, state: dict[str, Any], model: dict[str, torch.Tensor],
                    ema: dict[str, torch.Tensor] | None = None, optim: dict[str, torch.Tensor] | None = None,
                    rng: dict[str, torch.Tensor] | None = None, extra: dict[str, torch.Tensor] | None = None
                    ) -> Path:
    """Write checkpoint folder ``path`` (all files or none); the one it replaces becomes ``path.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_PREFIX}", dir=path.parent))
    try:
        files = {}
        for name, tensors in (("model", model), ("ema", ema), ("optim", optim), ("rng", rng or None),
                              ("extra", extra or None)):
            if tensors is None:
                continue
            data = tensors_to_bytes(tensors)
            atomic_write_bytes(tmp / f"{name}.safetensors", data)
            files[f"{name}.safetensors"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        state = json.loads(json.dumps({"format": FORMAT, **state, "files": files}, default=json_default))
        state["state_sha256"] = _state_digest(state)
        save_json(tmp / "state.json", state)
        fsync_dir(tmp)
        prev = path.with_name(path.name + PREV_SUFFIX)
        if path.exists() or path.is_symlink():
            discard_dir(prev)
            os.replace(path, prev)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def verify_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Read checkpoint folder ``path``: its state and the raw bytes of every file, all checksums checked.

    Raises CheckpointError naming the first problem (missing file, size or checksum mismatch, ...).
    """
    path = Path(path)
    state = load_json(path / "state.json")
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"{path / 'state.json'}: not a tessera checkpoint (no 'format'); the file is "
                              "corrupt or from another program")
    blobs: dict[str, bytes] = {}
    if state["format"] in LEGACY_FORMATS:
        warnings.warn(f"{path} was written by an older tessera without checksums; it is loaded unverified",
                      TesseraWarning, stacklevel=3)
        for name in TENSOR_FILES:
            f = path / f"{name}.safetensors"
            if f.is_file():
                blobs[f.name] = f.read_bytes()
        if "model.safetensors" not in blobs:
            raise CheckpointError(f"{path}: model.safetensors is missing; the checkpoint is incomplete")
        return state, blobs
    if state["format"] != FORMAT:
        raise CheckpointError(f"{path / 'state.json'}: format {state['format']!r} is not {FORMAT!r}; it was "
                              "written by another tessera version, load it with that version")
    if state.get("state_sha256") != _state_digest(state):
        raise CheckpointError(f"{path / 'state.json'}: checksum mismatch; the file was altered or is corrupt")
    files = state.get("files")
    if not isinstance(files, dict) or "model.safetensors" not in files:
        raise CheckpointError(f"{path / 'state.json'}: lists no model.safetensors; the checkpoint is incomplete")
    for name, info in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f}: missing; the checkpoint is incomplete")
        data = f.read_bytes()
        if len(data) != info.get("bytes"):
            raise CheckpointError(f"{f}: {len(data)} bytes, {info.get('bytes')} were written; the file is "
                                  "truncated or altered")
        if hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise CheckpointError(f"{f}: sha256 mismatch; the file is corrupt or was altered")
        blobs[name] = data
    return state, blobs


def _candidates(path: Path) -> list[Path]:
    """Checkpoint folders to try, newest first: ``RUN/ckpt``, ``RUN/ckpt.prev`` for a run directory;
    ``CK``, ``CK.prev`` for a checkpoint folder ``CK``. Folders that look like checkpoints, complete or not."""
    run_dir = any((path / n).exists() for n in ("ckpt", f"ckpt{PREV_SUFFIX}", ".ckpt.old"))
    base = path / "ckpt" if run_dir else path
    out = [base, base.with_name(base.name + PREV_SUFFIX), base.with_name(f".{base.name}.old")]  # .old: legacy
    return [c for c in out if (c / "state.json").exists() or (c / "model.safetensors").exists()]


def find_checkpoint(path: str | Path) -> Path | None:
    """The newest checkpoint folder under run directory (or checkpoint folder) ``path``, unverified;
    None when there is none."""
    c = _candidates(Path(path))
    return c[0] if c else None


def load_checkpoint(path: str | Path, *, quarantine: bool = False) -> Checkpoint:
    """Read and verify the newest good checkpoint of ``path`` (a run directory or a checkpoint folder).

    When the newest is corrupt or incomplete, warns and falls back to the previous one; with
    ``quarantine`` (a run resuming in its own directory) the bad folder is renamed ``<name>.corrupt``
    so that the next save does not keep it as the fallback. Raises CheckpointError when no checkpoint
    verifies.
    """
    path = Path(path)
    cands = _candidates(path)
    if not cands:
        raise CheckpointError(f"no checkpoint in {path} (expected {path / 'ckpt' / 'state.json'}); "
                              "check the run directory, or start a new run without --resume")
    problems: list[tuple[Path, str]] = []
    for cand in cands:
        try:
            state, blobs = verify_checkpoint(cand)
            t = {k[: -len(".safetensors")]: tensors_from_bytes(v, cand / k) for k, v in blobs.items()}
        except CheckpointError as e:
            problems.append((cand, str(e)))
            continue
        fallback = None
        if problems:
            bad, why = problems[0]
            fallback = (bad, why)
            moved = ""
            if quarantine and bad.parent == cand.parent:
                discard_dir(bad.with_name(bad.name + ".corrupt"))
                os.replace(bad, bad.with_name(bad.name + ".corrupt"))
                moved = f" (moved to {bad.name}.corrupt)"
            warnings.warn(f"{bad} is unusable{moved}: {why}; using the previous checkpoint {cand} (step "
                          f"{state.get('step')}) instead", TesseraWarning, stacklevel=2)
        return Checkpoint(cand, state, t["model"], t.get("ema"), t.get("optim", {}), t.get("rng", {}),
                          t.get("extra", {}), fallback)
    detail = "; ".join(why for _, why in problems)
    raise CheckpointError(f"no usable checkpoint in {path}: {detail}; start a new run in another --out")
