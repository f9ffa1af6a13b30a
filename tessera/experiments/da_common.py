"""Shared by the domain-adaptation experiments: one seed's two units, and the rows of Tables 3/9/11/12."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from ..results import Report
from .da_protocol import ROWS, AdaptConfig, run_compositional, run_isometric
from .units import Units

__all__ = ["collect", "run_seed"]


def run_seed(units: Units, seed: int, data: tuple, cfg: AdaptConfig, build: Callable[[str, int], Any]
             ) -> dict[str, Any]:
    """The compositional and the isometric unit of one seed (each resumable at step level in its workdir).

    ``data``: (sources, source tests, target train (labelled), target test); ``build(kind, seed)``
    returns a fresh ``"comp"`` or ``"iso"`` model.
    """
    sources, tests, ttr, tte = data
    out: dict[str, Any] = {"seconds": {}}
    for kind, protocol in (("comp", run_compositional), ("iso", run_isometric)):
        def one(work: Path, kind: str = kind, protocol: Callable[..., dict[str, Any]] = protocol) -> dict[str, Any]:
            t0, c0 = time.perf_counter(), time.process_time()
            res = protocol(build(kind, seed), sources, ttr, tte, tests, cfg, seed=seed, work=work,
                           log=lambda m: print(m, flush=True))
            res["seconds"] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
            return res
        out[kind] = units.run((kind, f"seed{seed}"), one)
        out["seconds"][kind] = out[kind]["seconds"]
    return out


def collect(report: Report, per_seed: list[dict[str, Any]], source_names: list[str], setting: str,
            paper_t3: dict[str, float], paper_t12: dict[str, tuple[float, float]],
            paper_t9: dict[str, float] | None, source_table: str = "12") -> None:
    """Table 3, Table 12 / 11 (``source_table``: per-domain supervised) and Table 9 rows from the per-seed results."""
    def vals(model: str, key: str) -> list[float]:
        return [r[model]["acc"][key] for r in per_seed]

    def params(model: str, key: str) -> int:
        return per_seed[0][model]["params"][key]

    def lrs(model: str, key: str) -> dict[str, Any]:
        """``{"chosen_lr": [per seed]}`` (and ``"chosen_bn"``) when the row's learning rate (and target BN
        mode) was chosen on validation data."""
        sel = key.split("_", 1)[1]                       # comp_adda -> adda, ia_supervised -> supervised
        out: dict[str, Any] = {}
        for what in ("chosen_lr", "chosen_bn"):
            chosen = [r[model]["info"].get("selection", {}).get(sel, {}).get(what) for r in per_seed]
            if all(c is not None for c in chosen):
                out[what] = chosen
        return out

    for key, name in ROWS.items():
        model = "comp" if key.startswith("comp") else "iso"
        report.add_row(setting=setting, method=name, metric="target accuracy (%)", values=vals(model, key),
                       paper=paper_t3.get(key), trained_params=params(model, key), table="3", **lrs(model, key))
    report.add_row(setting=setting, method="Supervised (IA)", metric="target accuracy (%)",
                   values=vals("iso", "ia_supervised"), paper=None, trained_params=params("iso", "ia_supervised"),
                   table="3 (extra)", **lrs("iso", "ia_supervised"))
    diagnostics = {"comp_stats_only": "Comp. source-only + target BN statistics re-estimated",
                   "comp_adda_bn_eval": "Comp. Adversarial, target BN statistics frozen",
                   "comp_m3sda_bn_eval": "Comp. Moment Matching, target BN statistics frozen",
                   "comp_adda_bn_train": "Comp. Adversarial, target BN statistics updated",
                   "comp_m3sda_bn_train": "Comp. Moment Matching, target BN statistics updated",
                   "comp_supervised_bn_eval": "Comp. supervised, target BN statistics frozen",
                   "comp_supervised_bn_train": "Comp. supervised, target BN statistics updated"}
    for key, name in diagnostics.items():
        if key in per_seed[0]["comp"]["acc"]:
            report.add_row(setting=setting, method=name, metric="target accuracy (%)", values=vals("comp", key),
                           paper=None, trained_params=params("comp", key), table="3 (diagnostic)")
    stats = "Comp. source-only + target BN statistics re-estimated"
    gains = [("comp_adda", "comp_source_only"), ("comp_m3sda", "comp_source_only"),
             ("comp_supervised", "comp_source_only"), ("comp_stats_only", "comp_source_only"),
             ("ia_adda", "source_only"), ("ia_m3sda", "source_only"),
             ("comp_adda", "comp_stats_only"), ("comp_m3sda", "comp_stats_only"),   # beyond the BN statistics?
             ("comp_supervised", "comp_adda"), ("comp_supervised", "comp_m3sda")]   # the bound above both?
    for key, base in gains:
        model = "comp" if key.startswith("comp") else "iso"
        if key in per_seed[0][model]["acc"] and base in per_seed[0][model]["acc"]:
            diff = [a - b for a, b in zip(vals(model, key), vals(model, base))]
            label, base_label = ROWS.get(key, stats), ROWS.get(base, stats)
            report.add_row(setting=setting, method=f"{label} - {base_label}", metric="paired gain (points)",
                           values=diff, paper=None, trained_params=params(model, key), table="3 (paired)")
    for d in source_names:
        p = paper_t12.get(d, (None, None))
        report.add_row(setting=f"source {d} (supervised)", method="Isometric", metric="test accuracy (%)",
                       values=vals("iso", f"source:{d}"), paper=p[0], trained_params=params("iso", "pretrain"),
                       table=source_table)
        report.add_row(setting=f"source {d} (supervised)", method="Compositional", metric="test accuracy (%)",
                       values=vals("comp", f"source:{d}"), paper=p[1], trained_params=params("comp", "pretrain"),
                       table=source_table)
    if paper_t9 is not None and "init:random" in per_seed[0]["comp"]["acc"]:
        n_t = params("comp", "comp_supervised")
        labels = {"random": "Random", "accuracy": "Acc-based", "copy": "S/O (copied source)", "learned": "Learned"}
        for kind, label in labels.items():
            report.add_row(setting=f"{setting} target init", method=label, metric="initial accuracy (%)",
                           values=vals("comp", f"init:{kind}"), paper=paper_t9.get(kind), trained_params=0,
                           table="9")
            report.add_row(setting=f"{setting} target init", method=label, metric="fine-tuned accuracy (%)",
                           values=vals("comp", f"ft:{kind}"), paper=None, trained_params=n_t, table="9")
