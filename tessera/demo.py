"""``tessera demo``: a one-minute, offline tour of every capability on generated / bundled data.

Each capability contributes a section ``demo(out_dir) -> list[row dict]``; rows are printed as one
table and written to ``OUT/demo.json`` in the standard result shape.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import torch

from .results import Report, format_table
from .techniques import DEMO_SECTIONS
from .threads import intra_op_threads

__all__ = ["SECTIONS", "run_demo"]

SECTIONS = DEMO_SECTIONS
"""``(title, "module:function")`` in the order they run; registered in :mod:`tessera.techniques`."""


def run_demo(out: Path, sections: list[tuple[str, str]] | None = None) -> dict:
    """Run every available section, print one table, write ``out/demo.json``.

    Sections run on one intra-op thread: their models are tiny, and on a loaded CPU OpenMP threads
    waiting for each other made the mixture section ~18x slower with two threads (498 s vs 28 s).
    """
    with intra_op_threads(1):
        return _run(Path(out), sections)


def _run(out: Path, sections: list[tuple[str, str]] | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    report = Report("demo", config={"out": str(out)})
    for title, target in sections or SECTIONS:
        mod_name, fn_name = target.split(":")
        try:
            fn = getattr(importlib.import_module(mod_name), fn_name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("tessera"):
                continue  # capability not built in this version
            raise
        t0 = time.perf_counter()
        print(f"== {title}", flush=True)
        rows = fn(out / mod_name.split(".")[1])
        report.rows.extend({"section": mod_name.split(".")[1], **r} for r in rows)
        print(format_table(rows))
        print(f"   ({time.perf_counter() - t0:.1f} s; files in {out / mod_name.split('.')[1]})\n", flush=True)
    result = report.write(out / "demo.json")
    print(f"demo finished in {result['wall_seconds']:.1f} s; results in {out / 'demo.json'}")
    return result
