"""The ``tessera`` command line on sklearn's 8x8 digits (no data files), with fault injection.

Imported by the reliability tests (``use_digits(monkeypatch)``), or run as a script in a subprocess:
``python tests/train/cli_digits.py train CONFIG --out DIR ...`` with these environment hooks:

* ``TT_SIGNAL_AT="7:SIGTERM"`` (or ``"5:SIGINT,5:SIGINT"``): send this process the signal(s) right after
  global step 7 (a real signal, delivered to the real handlers);
* ``TT_KILL_IN_SAVE="7"``: SIGKILL this process just before the 7th file written into a checkpoint's
  temporary folder;
* ``TT_FSIZE_AT="6:2000"``: after step 6, limit the size of any file this process writes to 2000 bytes
  (``RLIMIT_FSIZE``), as a full disk would stop a write.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

CONFIG = """\
model: {name: isometric_small, kwargs: {depth: 1, patch: 2, width_mult: 0.2, head_channels: [8, 8], dropout: 0.1}}
tasks: [{name: digits, dataset: digits, metrics: [accuracy]}]
train: {seed: 0, steps: 12, batch_size: 32, eval_batch_size: 64, log_every: 2, checkpoint_every: 0, threads: 1,
        progress: "off", optim: {name: rmsprop_tf, lr: 0.01}, schedule: {name: cosine, warmup_steps: 2},
        ema: {decay: 0.9}}
"""


def write_config(folder: Path, text: str = CONFIG) -> Path:
    p = Path(folder) / "digits.yaml"
    p.write_text(text)
    return p


def _load(tc, data_root, split):
    from train_helpers import digits
    tr, ev = digits(256, 128)
    x, y = tr if split == tc.split_train else ev
    limit = tc.limit_train if split == tc.split_train else tc.limit_eval
    return (x[:limit], y[:limit]) if limit is not None else (x, y)


def use_digits(monkeypatch) -> None:
    """Make ``tessera train`` / ``eval`` read dataset ``digits`` from sklearn (in this process)."""
    from tessera.train import cli_entry
    monkeypatch.setattr(cli_entry, "load_task_data", _load)


def _hooks() -> None:
    from tessera.train import checkpoint, cli_entry
    from tessera.train.trainer import Trainer

    cli_entry.load_task_data = _load
    at_step: dict[int, list] = {}
    for item in filter(None, os.environ.get("TT_SIGNAL_AT", "").split(",")):
        step, name = item.split(":")
        at_step.setdefault(int(step), []).append(lambda s=getattr(signal, name): os.kill(os.getpid(), s))
    if "TT_FSIZE_AT" in os.environ:
        import resource
        step, size = (int(v) for v in os.environ["TT_FSIZE_AT"].split(":"))
        at_step.setdefault(step, []).append(
            lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.getrlimit(resource.RLIMIT_FSIZE)[1])))
    if at_step:
        real_step = Trainer.train_step

        def train_step(self, step):
            out = real_step(self, step)
            for fn in at_step.get(self.step, []):
                fn()
            return out
        Trainer.train_step = train_step
    if "TT_KILL_IN_SAVE" in os.environ:
        n_kill, seen = int(os.environ["TT_KILL_IN_SAVE"]), [0]
        real_write = checkpoint.atomic_write_bytes

        def write(path, data):
            if Path(path).parent.name.startswith(".ckpt.tmp-"):
                seen[0] += 1
                if seen[0] == n_kill:
                    os.kill(os.getpid(), signal.SIGKILL)
            return real_write(path, data)
        checkpoint.atomic_write_bytes = write


if __name__ == "__main__":
    _hooks()
    from tessera.cli import main
    raise SystemExit(main(sys.argv[1:]))
