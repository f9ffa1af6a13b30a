"""Best-validation state kept per *universe*: many independent runs trained as one batched program.

When U independent runs (seeds, settings, methods) share one model (e.g. vectorized task groups with
``reparameterize(groups=)``), each run must keep and restore ITS best state. :class:`BestRows` does
that for tensors whose dim-0 rows belong to universes (``rows[i] (n_i,)``, or 0-d: the whole tensor is
one universe's): ``update(val (U,))`` keeps the rows (and their optimizer moments) of every universe
whose validation improved; ``restore()`` writes them back. :class:`KeepBest` runs it on the engine.

>>> w = torch.nn.Parameter(torch.zeros(3, 2))
>>> best = BestRows([w], [torch.tensor([0, 1, 1])])
>>> _ = best.update(torch.tensor([1.0, 1.0]))
>>> with torch.no_grad(): _ = w.fill_(5.0)
>>> best.update(torch.tensor([0.5, 2.0])).tolist()          # universe 0 improved, 1 did not
[True, False]
>>> best.restore(); w[:, 0].tolist()
[5.0, 0.0, 0.0]
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from torch import Tensor

from .method import Callback

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["BestRows", "KeepBest"]


class BestRows:
    """Per-universe best copies of ``tensors`` (and of ``optimizer``'s same-shaped moments for them)."""

    def __init__(self, tensors: Sequence[Tensor], rows: Sequence[Tensor],
                 optimizer: torch.optim.Optimizer | None = None):
        self.tensors, self.rows, self.optimizer = list(tensors), [r.long() for r in rows], optimizer
        self.val: Tensor | None = None
        self.saved: list[Tensor] = []
        self.moments: list[dict[str, Tensor]] = []

    def _moments(self, t: Tensor) -> dict[str, Tensor]:
        st = self.optimizer.state.get(t, {}) if self.optimizer is not None else {}
        return {k: v for k, v in st.items() if torch.is_tensor(v) and v.shape == t.shape}

    def _mask(self, improved: Tensor, rows: Tensor, t: Tensor) -> Tensor:
        m = improved[rows.to(improved.device)].to(t.device)
        return m.reshape(m.shape + (1,) * (t.dim() - m.dim()))

    @torch.no_grad()
    def update(self, val: Tensor) -> Tensor:
        """Keep the universes with ``val < best`` (lower is better); returns the ``(U,)`` improved mask."""
        val = val.detach().reshape(-1).float().cpu()
        if self.val is None:
            self.val = torch.full_like(val, math.inf)
            self.saved = [t.detach().clone() for t in self.tensors]
            self.moments = [{k: v.clone() for k, v in self._moments(t).items()} for t in self.tensors]
        improved = val < self.val
        self.val = torch.where(improved, val, self.val)
        for i, t in enumerate(self.tensors):
            m = self._mask(improved, self.rows[i], t)
            self.saved[i] = torch.where(m, t.detach(), self.saved[i])
            for k, v in self._moments(t).items():
                old = self.moments[i].get(k)
                self.moments[i][k] = v.clone() if old is None else torch.where(m, v, old)
        return improved

    @torch.no_grad()
    def restore(self) -> None:
        """Write every universe's best rows (and optimizer moments) back."""
        if self.val is None:
            return
        for i, t in enumerate(self.tensors):
            t.copy_(self.saved[i])
            for k, v in self._moments(t).items():
                if k in self.moments[i]:
                    v.copy_(self.moments[i][k])

    def state_dict(self) -> dict[str, Any]:
        return {"val": self.val, "saved": self.saved, "moments": self.moments}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.val, self.saved, self.moments = state["val"], list(state["saved"]), list(state["moments"])


class KeepBest(Callback):
    """Every ``every`` steps up to step ``until``: ``validate() -> (U,)``, keep each universe's best
    (:class:`BestRows`); at ``until`` restore it. The engine then trains on to the end of the run.

    Args:
        tensors, rows: what to keep and the universe of each dim-0 row (see :class:`BestRows`).
        validate: ``fn() -> (U,)`` tensor, lower is better.
        optimizer: the engine optimizer (by name) whose moments are kept with the tensors.
    """

    def __init__(self, tensors: Sequence[Tensor], rows: Sequence[Tensor], validate: Callable[[], Tensor],
                 every: int, until: int, optimizer: str = "main"):
        self.best = BestRows(tensors, rows)
        self.validate, self.every, self.until, self.optimizer = validate, int(every), int(until), optimizer
        self.history: list[Tensor] = []

    def on_fit_start(self, trainer: "Trainer") -> None:
        self.best.optimizer = trainer.optimizers[self.optimizer]

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, Any]) -> None:
        if step <= self.until and self.every > 0 and step % self.every == 0:
            val = self.validate()
            self.best.update(val)
            self.history.append(val.detach().cpu())
        if step == self.until:
            self.best.restore()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best.state_dict(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best.load_state_dict(state["best"])
        self.history = list(state.get("history") or [])
