"""Stop training cleanly on SIGINT / SIGTERM (Ctrl-C, a cluster's preemption notice).

Inside ``with graceful_stop():`` the first SIGINT or SIGTERM only sets a flag; the :class:`Trainer`
checks it at every step boundary, saves a checkpoint there and raises :class:`Interrupted`, whose
message says where the checkpoint is. A second signal of the same kind acts as usual (SIGINT raises
KeyboardInterrupt at once, SIGTERM ends the process). Under torch.distributed the ranks agree on the
stop (one tiny all-reduce per step) so that they all stop at the same step.

Outside the block nothing changes: signals keep their usual effect and the check costs nothing.

>>> with graceful_stop():
...     stop_requested()
0
"""
from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import torch

from ..errors import TesseraError
from . import dist

__all__ = ["graceful_stop", "stop_requested", "Interrupted", "signal_name"]

_installed = 0                 # nesting depth of graceful_stop in the main thread
_pending = 0                   # the signal received (0: none)


class Interrupted(TesseraError):
    """Training stopped because of a signal; ``str()`` says what was saved and how to continue."""

    def __init__(self, message: str, signum: int, step: int | None = None):
        super().__init__(message)
        self.signum, self.step = signum, step


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _handler(signum: int, frame: Any) -> None:
    global _pending
    _pending = signum
    # a second signal of this kind acts as it would without us
    signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
    if dist.rank() == 0:
        print(f"tessera: {signal_name(signum)} received; stopping at the end of this step and saving a "
              f"checkpoint (send it again to quit at once, without saving)", file=sys.stderr, flush=True)


class graceful_stop:
    """Context manager: SIGINT / SIGTERM request a stop at the next step boundary (main thread only;
    elsewhere it does nothing)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "graceful_stop":
        global _installed, _pending
        self.active = threading.current_thread() is threading.main_thread()
        if self.active:
            if _installed == 0:
                _pending = 0
                # a signal the parent set to be ignored (nohup, a background job) stays ignored
                self.old = {s: signal.getsignal(s) for s in self.SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
                for s in self.old:
                    signal.signal(s, _handler)
            _installed += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        global _installed, _pending
        if not self.active:
            return
        _installed -= 1
        if _installed == 0:
            for s, h in getattr(self, "old", {}).items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)
            _pending = 0


def stop_requested(device: torch.device | None = None) -> int:
    """The signal that asked training to stop (0: none). Under torch.distributed every rank gets the
    same answer (every rank must call it at the same step)."""
    if not _installed:
        return 0
    if not dist.is_dist():
        return _pending
    dev = device if device is not None and device.type == "cuda" else torch.device("cpu")
    t = torch.tensor([_pending], dtype=torch.int64, device=dev)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def interrupted(trainer: Any) -> Interrupted:
    """The :class:`Interrupted` a trainer stopped by ``trainer.stop_signal`` raises, naming its checkpoint."""
    sig, step = trainer.stop_signal, trainer.step
    if trainer.out_dir is not None and trainer.state.last_step == step:
        saved = f"checkpoint saved in {trainer.out_dir / 'ckpt'}"
    else:
        saved = "no checkpoint was written (the trainer has no out_dir)"
    return Interrupted(f"stopped by {signal_name(sig)} at step {step}; {saved}", sig, step)
