"""The one JSON shape every ``tessera reproduce`` and ``tessera bench`` emits (see README, "Results").

{"name", "version", "device", "wall_seconds", "config", "rows": [...]}; an experiment row carries
``setting, method, metric, lower_is_better, mean, stderr, n, paper``; a benchmark row carries
``setting, method, metric, baseline_s, candidate_s, ratio`` (candidate / baseline, same process).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .io import save_json

__all__ = ["Report", "mean_stderr", "format_table"]


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return m, 0.0
    var = sum((v - m) ** 2 for v in vals) / (len(vals) - 1)
    return m, math.sqrt(var / len(vals))


@dataclass
class Report:
    """Collects rows and writes the stable result JSON.

    >>> r = Report("demo", config={"steps": 10})
    >>> _ = r.add_row(setting="digits", method="plain", metric="accuracy", values=[0.9, 0.92], paper=None)
    >>> r.rows[0]["n"]
    2
    """

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add_row(self, *, setting: str, method: str, metric: str, values: Iterable[float] | None = None,
                mean: float | None = None, stderr: float | None = None, n: int | None = None,
                lower_is_better: bool = False, paper: float | None = None, **extra: Any) -> dict[str, Any]:
        """Add an experiment row, from raw per-seed ``values`` or from a precomputed mean/stderr."""
        if values is not None:
            vals = list(values)
            mean, stderr = mean_stderr(vals)
            n = len(vals)
            extra.setdefault("values", vals)
        row = {"setting": setting, "method": method, "metric": metric, "lower_is_better": lower_is_better,
               "mean": mean, "stderr": stderr, "n": n, "paper": paper, **extra}
        self.rows.append(row)
        return row

    def add_bench_row(self, *, setting: str, method: str, metric: str, baseline_s: float,
                      candidate_s: float, **extra: Any) -> dict[str, Any]:
        """Add a benchmark row; ratio = candidate_s / baseline_s (lower is faster)."""
        row = {"setting": setting, "method": method, "metric": metric, "baseline_s": baseline_s,
               "candidate_s": candidate_s, "ratio": candidate_s / baseline_s, **extra}
        self.rows.append(row)
        return row

    def to_dict(self) -> dict[str, Any]:
        from . import __version__
        return {"name": self.name, "version": __version__, "device": self.device,
                "wall_seconds": round(time.perf_counter() - self.started, 3),
                "config": self.config, "rows": self.rows}

    def write(self, path: str | Path | None) -> dict[str, Any]:
        d = self.to_dict()
        if path:
            save_json(path, d)
        return d


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Plain-text table of rows (used by every CLI command that prints results)."""
    if not rows:
        return "(no rows)"
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns and k not in ("values", "lower_is_better"):
                    columns.append(k)
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    line = lambda xs: "  ".join(x.ljust(w) for x, w in zip(xs, widths))  # noqa: E731
    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)
