"""Algorithm 2 of paper 003 on the training engine: MUiR's alignment search as a :class:`Callback`.

The engine trains; :class:`MuirSearch` decides at step boundaries what the alignment is::

    steps [0, n_init)                          Eq. 5 with the initial alignment
    generation g (n_iter steps each):          begin: reset the soft-merge scores and their optimizer
                                               state, propose challengers (Eq. 8 on);
                                               end: select by summed beliefs (Eq. 5), validate
    after the last generation                  restore the best-validation state (model, optimizer,
                                               search), fix the alignment
    n_final more steps                         Eq. 5 with the alignment fixed

The run is ``search_steps(config)`` steps long. Everything the search keeps (its RNG, the history, the
best state) is part of the engine's checkpoint, so a killed search resumes exactly.

>>> import torch
>>> from torch import nn
>>> from tessera.hyper import reparameterize, MuirSearch, search_steps
>>> from tessera.train import Trainer, TrainConfig, Task
>>> _ = torch.manual_seed(0)
>>> nets = [nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1)) for _ in range(2)]
>>> muir = reparameterize(nets, block=(8, 8), context=2, lam=1, n_init=2, n_iter=3, n_generations=2, n_final=2,
...                       verbose=False)
>>> x, y = torch.randn(32, 4), torch.randn(32, 1)
>>> tasks = [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x)) for i in range(2)]
>>> cfg = TrainConfig(steps=search_steps(muir.config), batch_size=8, multitask="sum", progress="off",
...                   log_every=0, checkpoint_every=0, optim={"name": "adam", "lr": 1e-3}, ema={"enabled": False})
>>> search = MuirSearch(muir)
>>> _ = Trainer(muir, tasks, cfg, param_groups=muir.param_groups(lr=1e-3), callbacks=[search]).fit()
>>> [row["generation"] for row in search.history]
[1, 2]
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import ConfigError
from ..train.best import BestRows
from ..train.method import Callback
from .config import MuirConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..train import Trainer
    from .api import MuirModels

__all__ = ["MuirSearch", "search_steps"]


def search_steps(cfg: MuirConfig) -> int:
    """Length of Algorithm 2 in training steps: ``n_init + n_generations * n_iter + n_final``."""
    gens = cfg.n_generations if cfg.lam > 0 else 0
    return cfg.n_init + gens * cfg.n_iter + cfg.n_final


def _opt_state_to_json_safe(sd: dict[str, Any]) -> dict[str, Any]:
    return {"state": {str(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


def _opt_state_from_saved(sd: dict[str, Any]) -> dict[str, Any]:
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in sd["param_groups"]]
    return {"state": {int(k): v for k, v in sd["state"].items()}, "param_groups": groups}


class MuirSearch(Callback):
    """Run Algorithm 2 (the (1+lambda)-EA over the alignment) alongside the engine's training.

    Args:
        muir: the :class:`~tessera.hyper.MuirModels` being trained (its ``config`` gives the schedule).
        validate: optional ``fn() -> float`` (lower is better) evaluated after every generation; the
            best state is restored after the search (Alg. 2 line 18). None: keep the last state.
            ``fn() -> (U,) tensor``: one value per search universe (``reparameterize(groups=)``, U > 1):
            each universe keeps and gets back ITS best parameters, optimizer moments and alignment
            (:class:`~tessera.train.best.BestRows`), as U independent runs would.
        optimizer: the engine optimizer holding the soft-merge scores (their state is reset each
            generation, S.4).
        on_generation: optional ``fn(row)`` called with each generation's statistics.

    ``history`` holds one row per generation: ``muir.stats()`` plus ``step`` and ``val``.
    """

    def __init__(self, muir: "MuirModels", validate: Callable[[], float] | None = None, optimizer: str = "main",
                 on_generation: Callable[[dict[str, Any]], None] | None = None):
        self.muir, self.validate, self.optimizer, self.on_generation = muir, validate, optimizer, on_generation
        cfg = muir.config
        self.n_init, self.n_iter, self.n_final = cfg.n_init, cfg.n_iter, cfg.n_final
        self.generations = cfg.n_generations if cfg.lam > 0 else 0
        self.search_end = self.n_init + self.generations * self.n_iter
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.rows_best: BestRows | None = None
        self._rows_state: dict[str, Any] | None = None

    def _opt(self, trainer: "Trainer") -> torch.optim.Optimizer:
        if self.optimizer not in trainer.optimizers:
            raise ConfigError(f"MuirSearch(optimizer={self.optimizer!r}) but the engine's optimizers are "
                              f"{sorted(trainer.optimizers)}; name the one that holds muir.param_groups()")
        return trainer.optimizers[self.optimizer]

    def on_fit_start(self, trainer: "Trainer") -> None:
        total = trainer.total_steps
        if total is not None and total < self.search_end:
            raise ConfigError(f"the run has {total} steps but MUiR's search needs {self.search_end} "
                              f"(n_init + n_generations * n_iter); set train.steps = search_steps(config)")
        if trainer.step == 0:
            self.muir.fix_alignment()

    def on_step_start(self, trainer: "Trainer", step: int) -> None:
        if self.n_init <= step < self.search_end and (step - self.n_init) % self.n_iter == 0:
            self.muir.begin_generation(self._opt(trainer))

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, Any]) -> None:
        if not (self.n_init < step <= self.search_end and (step - self.n_init) % self.n_iter == 0):
            return
        self.muir.end_generation()
        row: dict[str, Any] = {**self.muir.stats(), "step": step}
        val = self.validate() if self.validate is not None else None
        if torch.is_tensor(val) and val.numel() > 1:
            self._universes(trainer).update(val)
            row["val"] = val.detach().cpu().tolist()
        elif val is not None:
            row["val"] = v = float(val)
            if self.best is None or v < self.best["val"]:
                self.best = {"val": v, "model": copy.deepcopy(self.muir.state_dict()),
                             "optim": copy.deepcopy(self._opt(trainer).state_dict()),
                             "search": self.muir.search.state_dict()}
        self.history.append(row)
        if self.on_generation is not None:
            self.on_generation(row)
        if step == self.search_end:
            self._restore_best(trainer)

    def _universes(self, trainer: "Trainer") -> BestRows:
        if self.rows_best is None:
            opt, where = self._opt(trainer), self.muir.universe_rows()
            params = [p for g in opt.param_groups for p in g["params"] if id(p) in where]
            self.rows_best = BestRows(params + [self.muir._psi], [where[id(p)] for p in params]
                                      + [self.muir.search.groups], opt)
            if self._rows_state is not None:
                self.rows_best.load_state_dict(self._rows_state)
        return self.rows_best

    def _restore_best(self, trainer: "Trainer") -> None:
        if self.rows_best is not None:
            self.rows_best.restore()                     # psi0 included; fix_alignment below resets cand
        if self.best is not None:
            self.muir.load_state_dict(self.best["model"])
            self._opt(trainer).load_state_dict(self.best["optim"])
            self.muir.search.load_state_dict(self.best["search"])
        self.muir.fix_alignment()

    # -- checkpointed state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        best = None
        if self.best is not None:
            best = {**self.best, "optim": _opt_state_to_json_safe(self.best["optim"])}
        rows = self.rows_best.state_dict() if self.rows_best is not None else self._rows_state
        return {"search": self.muir.search.state_dict(), "history": self.history, "best": best, "rows_best": rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.muir.search.load_state_dict(state["search"])
        self.history = list(state.get("history") or [])
        best = state.get("best")
        if best is not None:
            best = {**best, "optim": _opt_state_from_saved(best["optim"])}
        self.best = best
        self._rows_state, self.rows_best = state.get("rows_best"), None
