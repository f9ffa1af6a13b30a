"""The one store of per-unit results every experiment uses, with step-level resume.

An experiment is a set of *units* (a seed, a method, a setting...). ``units.run(key, fn)`` returns
``fn(workdir)``'s JSON-able result, stored as ``<out>/<experiment>/<key...>.json`` with a fingerprint
of the experiment's configuration; a rerun with ``resume`` reuses finished units whose fingerprint
matches. ``workdir`` (``<key...>.work/``) is where the unit's training runs keep their engine
checkpoints (``Trainer(out_dir=workdir / "<run>")`` + ``fit(resume=True)``): a unit killed mid-run
continues from its last checkpoint, and ends with the same result as an uninterrupted run. The
workdir is deleted once the unit's result is stored (``keep_work=True`` keeps it), and when it was
left by a run with another configuration (its ``fingerprint`` file differs): the engine would
otherwise resume those checkpoints, as it accepts a changed run length.

Under ``torchrun`` every rank runs every unit (its training is data parallel) and rank 0 writes.

>>> import tempfile
>>> from pathlib import Path
>>> from tessera.experiments import RunOptions
>>> tmp = Path(tempfile.mkdtemp())
>>> units = Units(RunOptions(out=tmp), "demo", {"steps": 10}, log=lambda msg: None)
>>> units.run(("seed0",), lambda work: {"acc": 0.5})
{'acc': 0.5}
>>> units.run(("seed0",), lambda work: {"acc": 0.9})     # reused from disk
{'acc': 0.5}
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import load_json, save_json
from ..train import dist

__all__ = ["Units", "fingerprint"]


def fingerprint(d: Any) -> str:
    """12 hex digits of the SHA-1 of ``d``'s canonical JSON."""
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(s)).strip("_") or "_"


class Units:
    """Resumable per-unit results of one experiment (``opts.out / name``)."""

    def __init__(self, opts: Any, name: str, config: Any, *, keep_work: bool = False,
                 log: Callable[[str], None] | None = None):
        self.folder = Path(opts.out) / name
        self.fp, self.resume, self.name = fingerprint(config), bool(opts.resume), name
        self.keep_work = keep_work
        self.log = log or (lambda m: print(f"[{name}] {m}", flush=True))

    def path(self, key: Sequence[str]) -> Path:
        return self.folder.joinpath(*[_slug(k) for k in key[:-1]], _slug(key[-1]) + ".json")

    def workdir(self, key: Sequence[str]) -> Path:
        p = self.path(key)
        return p.with_name(p.stem + ".work")

    def done(self, key: Sequence[str]) -> dict[str, Any] | None:
        """The stored result of ``key`` when it exists with this configuration's fingerprint."""
        p = self.path(key)
        if not (self.resume and p.is_file()):
            return None
        saved = load_json(p)
        return saved["result"] if saved.get("fingerprint") == self.fp else None

    def run(self, key: Sequence[str], fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        key = tuple(str(k) for k in key)
        res = self.done(key)
        if res is not None:
            return res
        work = self.workdir(key)
        if dist.is_main():
            stamp = work / "fingerprint"
            left = stamp.read_text() if stamp.is_file() else None
            if work.exists() and (not self.resume or left != self.fp):
                shutil.rmtree(work, ignore_errors=True)  # --fresh, or left by another configuration: start over
            work.mkdir(parents=True, exist_ok=True)
            stamp.write_text(self.fp)
        dist.barrier()
        t0 = time.perf_counter()
        res = fn(work)
        self.log(f"{' / '.join(key)}: {time.perf_counter() - t0:.1f}s")
        if dist.is_main():
            save_json(self.path(key), {"fingerprint": self.fp, "key": list(key), "result": res})
            if not self.keep_work:
                shutil.rmtree(work, ignore_errors=True)
        dist.barrier()
        return res
