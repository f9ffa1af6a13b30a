"""One training unit of the MUiR cross-modal experiments: a group of (architecture, task) pairs trained
jointly on the engine, plain or sharing hypermodules, with MUiR's search as an engine callback.

``train_unit`` is what every MUiR table calls (Table 3 rows, context sizes, sharing methods): build each
task's model (its own seed, so the same adapter init in every row), reparameterize them together when
the row shares, train with :class:`tessera.train.Trainer` (Adam lr 1e-3 with torch's defaults,
constant LR, no EMA; one batch of every task per step, losses summed) and :class:`tessera.hyper.MuirSearch`,
evaluate, and return a JSON-able result. With ``workdir`` the run checkpoints there every
``checkpoint_every`` steps and resumes from it (``Units`` gives every unit its own workdir).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..config import to_dict
from ..errors import ConfigError
from ..hyper import MuirConfig, MuirSearch, share
from ..hyper.accounting import sharing_by_subset
from ..hyper.analysis import tensor_statistics
from ..train import Trainer, TrainConfig
from ..train.config import EmaConfig, OptimConfig, ScheduleConfig

__all__ = ["Spec", "train_unit", "sharing_row"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """How a unit's models are trained: ``plain`` (one model on its own: single-task learning) or a
    sharing method of :func:`tessera.hyper.share` (``muir``, ``classical``, ``adapters``) with context size
    ``context``; ``alignment="hierarchical"`` starts ``muir`` from the hierarchical alignment."""

    method: str = "muir"
    context: int = 4
    alignment: str = "disjoint"


def sharing_row(muir: Any, shorts: Sequence[str]) -> dict[str, int]:
    """Active hypermodules used exclusively by each subset of the tasks, keyed like ``"L+S"`` (Fig. 3a)."""
    subsets = sharing_by_subset(muir.alignment(), muir.location_table()[:, 0], muir.num_modules)
    return {"+".join(shorts[t] for t in k): v for k, v in subsets.items()}


def _models(tasks: Sequence[Any], seed: int) -> list[nn.Module]:
    models = []
    for t in tasks:                                # each task's own seed: the same adapter init in every row
        torch.manual_seed(1000 * seed + ord(t.short))
        models.append(t.model())
    torch.manual_seed(seed)
    return models


def train_unit(tasks: Sequence[Any], spec: Spec, muir_config: MuirConfig, *, steps: int, seed: int,
               workdir: Path | None = None, device: str = "auto", checkpoint_every: int = 250,
               log: Callable[[str], None] = print, label: str = "") -> dict[str, Any]:
    """Train ``tasks`` as one unit (see the module doc); returns metrics, timing and, for MUiR, the
    alignment, its history per generation and per-tensor statistics (Table 4)."""
    models = _models(tasks, seed)
    shorts = [t.short for t in tasks]
    plain_params = sum(p.numel() for m in models for p in m.parameters())
    muir, callbacks, groups = None, [], None
    if spec.method == "plain":
        if len(models) != 1:
            raise ConfigError(f"a plain unit trains one task, got {shorts}; run one unit per task")
        model: nn.Module = models[0]
        engine_tasks = [tasks[0].task(None)]
    else:
        cfg = dataclasses.replace(muir_config, context=spec.context).validate()
        method = "muir-hierarchical" if spec.method == "muir" and spec.alignment == "hierarchical" else spec.method
        muir = model = share(models, method, config=cfg)           # default targets: all but first/last layer
        cfg = muir.config
        engine_tasks = [t.task(i) for i, t in enumerate(tasks)]
        groups = muir.param_groups(lr=1e-3)
        every = max(1, cfg.n_generations // 5)

        def on_generation(row: dict[str, Any]) -> None:
            row["subsets"] = sharing_row(muir, shorts)
            if row["generation"] % every == 0:
                log(f"{label}: generation {row['generation']}/{cfg.n_generations}, active {row['active']}/"
                    f"{muir.num_modules}")
        start = {"generation": 0, "step": 0, **muir.stats(), "subsets": sharing_row(muir, shorts)}
        search = MuirSearch(muir, on_generation=on_generation)
        callbacks = [search]
    train_cfg = TrainConfig(steps=steps, batch_size=max(t.batch for t in tasks), seed=seed, multitask="sum",
                            device=device, optim=OptimConfig(name="adam", lr=1e-3, weight_decay=0.0, eps=1e-8),
                            schedule=ScheduleConfig(name="constant"), ema=EmaConfig(enabled=False),
                            log_every=100, checkpoint_every=checkpoint_every if workdir is not None else 0,
                            progress="off", eval_batch_size=1000)
    run_config = {"train": to_dict(train_cfg), "unit": {"spec": dataclasses.asdict(spec), "tasks": shorts,
                                                        "muir": muir_config.to_dict(), "seed": seed}}
    trainer = Trainer(model, engine_tasks, train_cfg, out_dir=workdir, callbacks=callbacks, param_groups=groups,
                      run_config=run_config)
    final = trainer.fit(resume=workdir is not None)
    metrics = {t.short: float(t.score(final["tasks"][t.short])) for t in tasks}
    train_s = float(final["train_seconds"])
    out: dict[str, Any] = {"tasks": shorts, "seed": seed, "spec": dataclasses.asdict(spec), "metrics": metrics,
                           "train_seconds": round(train_s, 2), "steps": steps,
                           "step_seconds": round(train_s / max(steps, 1), 4), "plain_params": plain_params}
    if muir is not None:
        st = muir.stats()
        table = muir.location_table()
        out.update(stats=st, history=[start, *search.history], num_modules=muir.num_modules,
                   psi0=muir.alignment().tolist(), layout=table[:, :2].tolist(), targets=muir.targets,
                   total_params=sum(p.numel() for p in muir.parameters()),
                   tensor_stats={k: [[float(f"{v:.6g}") for v in r] for r in t.tolist()]
                                 for k, t in tensor_statistics(muir).items()})
    if not all(math.isfinite(v) for v in metrics.values()):
        log(f"{label}: non-finite metric {metrics}")
    return out
