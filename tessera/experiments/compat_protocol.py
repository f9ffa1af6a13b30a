"""The measurement protocol and training recipes shared by the ``compat-*`` experiments (paper 004).

Training is the library's (:func:`tessera.compat.train_compatible`, :mod:`tessera.compat.apps`, all on
the one engine); per-unit results and step-level resume are :class:`tessera.experiments.units.Units`.

Recipes (:func:`recipe`), per network:

* ``"cosine"`` -- Adam, cosine decay to 0, no weight decay (the default budgets);
* ``"paper"`` -- App. E: Adam lr 0.01, weight decay 1e-7, lr / 10 every 5,000 steps (batch 512 and
  20,000 steps are the paper budget's), :func:`paper_recipe`;
* ``"constant"`` -- Adam at a constant lr (adaptation and fine-tuning).

>>> c = paper_recipe(steps=20000, batch_size=512, seed=0)
>>> c.optim.lr, c.optim.weight_decay, c.schedule.name, c.schedule.step_size, c.schedule.gamma
(0.01, 1e-07, 'step', 5000, 0.1)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..compat.aux import common_classes
from ..compat.measure import TestSet, cross_correlation, evaluate, features, own_accuracy, recombination_accuracy
from ..compat.measure import recombination_matrix
from ..compat.methods import NetSpec, Trained, train_compatible
from ..compat.tasks import LabelledTask
from ..errors import ConfigError
from ..train import TrainConfig

__all__ = ["pct", "recipe", "paper_recipe", "measure_trained", "train_measure", "SCHEDULES"]

SCHEDULES = ("cosine", "paper", "constant")


def pct(v: float) -> float:
    return round(100.0 * float(v), 3)


def recipe(steps: int, batch_size: int, lr: float, seed: int, *, schedule: str = "cosine", weight_decay: float = 0.0,
           step_size: int = 5000, device: str = "auto", checkpoint_every: int = 200) -> TrainConfig:
    """Adam (eps 1e-8) with ``schedule`` for ``steps`` minibatches per network, as an engine config."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown compat schedule {schedule!r}; choose {', '.join(SCHEDULES)}")
    sched: dict[str, Any] = {"cosine": {"name": "cosine", "final_lr_frac": 0.0},
                             "paper": {"name": "step", "step_size": step_size, "gamma": 0.1},
                             "constant": {"name": "constant"}}[schedule]
    return TrainConfig(steps=steps, batch_size=batch_size, seed=seed, device=device, log_every=0, progress="off",
                       checkpoint_every=checkpoint_every, eval_every=0, ema={"enabled": False}, schedule=sched,
                       optim={"name": "adam", "lr": lr, "eps": 1e-8, "weight_decay": weight_decay})


def paper_recipe(steps: int = 20000, batch_size: int = 512, seed: int = 0, **kw: Any) -> TrainConfig:
    """App. E: Adam, lr 0.01, weight decay 1e-7, batch 512, 20,000 steps, lr / 10 every 5,000 steps."""
    return recipe(steps, batch_size, 0.01, seed, schedule="paper", weight_decay=1e-7, step_size=5000, **kw)


def measure_trained(tr: Trained, tests: Sequence[TestSet], *, data: str = "extractor",
                    bn_modes: Sequence[str] = ("batch",), correlation: bool = False,
                    max_corr_images: int = 2000) -> dict[str, Any]:
    """Matrix, recombination accuracy and own accuracy per BN mode; optional feature cross-correlation.

    ``own_accuracy``: each network on its own full test set (the "compatibility costs no accuracy"
    check). ``own_accuracy_common``: the same on the classes common to all tasks (the upper bound of
    recombination accuracy; all classes when the tasks share none).
    """
    exts = [m.extractor for m in tr.members]
    heads = [m.head for m in tr.members]
    classes = [m.classes for m in tr.members]
    out: dict[str, Any] = {}
    for bn in bn_modes:
        mat = recombination_matrix(exts, heads, tests, classes, data=data, bn=bn)
        sfx = "" if bn == "batch" else f"_{bn}"
        out[f"matrix{sfx}"] = mat.tolist()
        out[f"recombination_accuracy{sfx}"] = recombination_accuracy(mat)
        out[f"own_accuracy{sfx}"] = own_accuracy(mat)  # diagonal: own head, own test set, all classes
    common = common_classes(*classes)
    if not common or all(set(common) == set(map(str, c)) for c in classes):
        out["own_accuracy_common"] = out["own_accuracy"] if "own_accuracy" in out else None
    else:
        out["own_accuracy_common"] = float(np.mean([
            evaluate(e, h, t.x, t.y, data_classes=t.classes, head_classes=common)
            for e, h, t in zip(exts, heads, tests)]))
    if correlation and len(exts) == 2:
        xs = torch.cat([t.x[:max_corr_images // len(tests)] for t in tests])
        fa, fb = features(exts[0], xs), features(exts[1], xs)
        out["correlation"] = cross_correlation(fa, fb)["mean"]
        out["correlation_permuted"] = cross_correlation(fa, fb, permute=True)["mean"]
    out["train_seconds"] = tr.seconds
    out["trained_params"] = tr.trained_params
    return out


def train_measure(work: Path, method: str, tasks: Sequence[LabelledTask], spec: NetSpec, config: TrainConfig, *,
                  scheme: str = "joint", rotation: str = "random", data: str = "extractor",
                  bn_modes: Sequence[str] = ("batch",), **train_kw: Any) -> dict[str, Any]:
    """One unit of the recombination experiments: :func:`~tessera.compat.train_compatible` in
    ``work / "train"`` (resumable), then :func:`measure_trained` with the feature cross-correlation."""
    tr = train_compatible(method, tasks, spec, config, scheme=scheme, rotation=rotation, out_dir=work / "train",
                          **train_kw)
    return measure_trained(tr, [t.test for t in tasks], data=data, bn_modes=bn_modes, correlation=True)
