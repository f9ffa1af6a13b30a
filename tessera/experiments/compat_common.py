"""Shared plumbing of the ``compat-*`` experiments: device, threads, per-unit resumable results.

Every unit of work (a setting, a method and a seed) is saved as ``<out>/<experiment>/<unit>.json`` with a
fingerprint of the configuration; with ``opts.resume`` an interrupted run reuses finished units.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..io import load_json, save_json
from . import RunOptions

__all__ = ["device_of", "fingerprint", "Units", "pct"]


def device_of(opts: RunOptions) -> torch.device:
    """``opts.device`` as a torch device ("auto": CUDA when available, else CPU)."""
    if opts.device in ("auto", None, ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(opts.device)


def fingerprint(d: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def pct(v: float) -> float:
    return round(100.0 * float(v), 3)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", s).strip("_")


class Units:
    """``units.run(key, fn)``: ``fn()``'s JSON result, reused from disk when the fingerprint matches."""

    def __init__(self, opts: RunOptions, name: str, config: dict[str, Any]):
        self.folder = Path(opts.out) / name
        self.fp, self.resume, self.name = fingerprint(config), opts.resume, name

    def run(self, key: tuple[str, ...], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = self.folder.joinpath(*[_slug(k) for k in key[:-1]], _slug(key[-1]) + ".json")
        if self.resume and path.is_file():
            saved = load_json(path)
            if saved.get("fingerprint") == self.fp:
                return saved["result"]
        t0 = time.perf_counter()
        res = fn()
        print(f"[{self.name}] {' / '.join(key)}: {time.perf_counter() - t0:.1f}s", flush=True)
        save_json(path, {"fingerprint": self.fp, "key": list(key), "result": res})
        return res
