"""What a run writes as it goes: ``metrics.jsonl`` lines, the progress bar and ``final.json``.

``metrics.jsonl`` holds one JSON object per line: ``{"kind": "train", "step", "task", "loss", "lr",
"samples_per_s", "epoch"}`` every ``log_every`` steps for each recorded task loss (other recorded
scalars, e.g. a discriminator's accuracy, as ``{"kind": "train", "step", "metric", "value"}``), and
``{"kind": "eval", "step", "task", "ema", <metric>: value}`` at every evaluation. A resumed run first
drops the lines past the step it resumed from, so the file equals an uninterrupted run's.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__
from ..io import atomic_write_bytes, save_json

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["RunLog"]


class RunLog:
    """Logging for one :class:`~tessera.train.Trainer` (rank 0 writes; other ranks only count)."""

    def __init__(self, trainer: "Trainer"):
        self.tr = trainer
        self.train_seconds = 0.0
        self.train_samples = 0
        self.ready = False
        self._win: dict[str, list[float]] = {}
        self._win_t, self._win_n = 0.0, 0

    @property
    def path(self) -> Path | None:
        return self.tr.out_dir / "metrics.jsonl" if self.tr.out_dir is not None else None

    def prepare(self) -> None:
        """Fresh run: empty metrics.jsonl. Resumed run: drop lines past the resumed step."""
        p = self.path
        if p is None or not self.tr.is_main or self.ready:
            return
        self.ready = True
        keep = []
        if self.tr.step > 0 and p.is_file():
            for line in p.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= self.tr.step:
                        keep.append(line)
                except json.JSONDecodeError:
                    continue
        atomic_write_bytes(p, "".join(s + "\n" for s in keep).encode())

    def write(self, rec: dict[str, Any]) -> None:
        p = self.path
        if p is None or not self.tr.is_main:
            return
        with open(p, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def progress(self, start: int, stop: int) -> Any:
        mode = self.tr.config.progress
        if not self.tr.is_main or mode == "off" or stop <= start:
            return None
        tty = sys.stderr.isatty()
        if mode == "auto" and not tty and stop - start < 1000:
            return None
        from tqdm.auto import tqdm
        return tqdm(total=stop, initial=start, desc="train", unit="step", file=sys.stderr,
                    dynamic_ncols=True, mininterval=0.5 if tty else 60.0, maxinterval=10.0 if tty else 60.0,
                    leave=tty)

    def epoch(self) -> float:
        """Passes over the first task's training data so far."""
        tr = self.tr
        t0, n = tr.tasks[0], len(tr.tasks)
        k = -(-tr.step // n) if n > 1 and tr.config.multitask == "round_robin" else tr.step
        return k / max(1, len(t0.train_data) // tr.batch_size(t0))

    def step(self, logs: dict[str, Any], seconds: float, samples: int, stop: int, bar: Any) -> None:
        tr = self.tr
        self.train_seconds += seconds
        self.train_samples += samples
        self._win_t += seconds
        self._win_n += samples
        for k, v in logs["values"].items():
            self._win.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs["values"].items()}, refresh=False)
        every = tr.config.log_every
        if every and (tr.step % every == 0 or tr.step == stop):
            lr = next(iter(logs["lr"].values()))
            names = {t.name for t in tr.tasks}
            speed = round(self._win_n / max(self._win_t, 1e-9), 2)
            for k, vs in self._win.items():
                mean = sum(vs) / len(vs)
                if k in names:
                    self.write({"kind": "train", "step": tr.step, "task": k, "loss": mean, "lr": lr,
                                "samples_per_s": speed, "epoch": round(self.epoch(), 4)})
                else:
                    self.write({"kind": "train", "step": tr.step, "metric": k, "value": mean, "lr": lr})
            self._win, self._win_t, self._win_n = {}, 0.0, 0

    def eval(self, res: dict[str, dict[str, float]]) -> None:
        for name, m in res.items():
            self.write({"kind": "eval", "step": self.tr.step, "task": name, "ema": self.tr.ema is not None, **m})

    def final(self, metrics: dict[str, dict[str, float]], wall: float) -> dict[str, Any]:
        tr = self.tr
        final = {
            "step": tr.step,
            "tasks": metrics,
            "ema": tr.ema is not None,
            "wall_seconds": round(wall, 3),
            "train_seconds": round(self.train_seconds, 3),
            "samples_per_s": round(self.train_samples / max(self.train_seconds, 1e-9), 2),
            "device": str(tr.device),
            "world_size": tr.world,
            "version": __version__,
            "torch": torch.__version__,
            "config": tr.run_config,
        }
        if tr.out_dir is not None and tr.is_main:
            save_json(tr.out_dir / "final.json", final)
        return final
