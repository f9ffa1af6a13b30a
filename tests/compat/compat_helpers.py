"""Test helpers: count (and interrupt) the engine's steps to prove a resumed run did not start over."""
from __future__ import annotations

from typing import Any

from tessera.train import Trainer


class Killed(Exception):
    """Raised in place of a kill -9 after the ``kill_at``-th engine step."""


def count_steps(monkeypatch: Any, kill_at: int | None = None) -> dict[str, int]:
    """Patch ``Trainer.train_step`` to count calls (``calls["n"]``); raise :class:`Killed` at ``kill_at``.

    The kill comes after the step's update and before its checkpoint, as a real kill mid-step would.
    """
    calls = {"n": 0}
    orig = Trainer.train_step

    def step(self: Trainer, s: int) -> Any:
        out = orig(self, s)
        calls["n"] += 1
        if kill_at is not None and calls["n"] == kill_at:
            raise Killed
        return out

    monkeypatch.setattr(Trainer, "train_step", step)
    return calls


def shared_data_root() -> "Path | None":
    """``$TESSERA_DATA`` if set, else ``../shared/data`` beside the repo; None when neither holds MNIST."""
    import os
    from pathlib import Path

    env = os.environ.get("TESSERA_DATA")
    cand = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return cand if (cand / "mnist").is_dir() else None
