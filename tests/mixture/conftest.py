"""Tiny stand-ins for the mixture experiments: every dataset reader returns scikit-learn's 8x8 digits
(no data files), and a helper that kills the training engine after a number of steps."""
import pytest
import torch
from sklearn.datasets import load_digits

import tessera.data
import tessera.mixture
from tessera.train import Trainer

from mixture_helpers import Killed


@pytest.fixture
def tiny_data(monkeypatch):
    d = load_digits()
    x = torch.tensor(d.images[:400], dtype=torch.float32).unsqueeze(1) / 16.0   # (400, 1, 8, 8)
    y = torch.tensor(d.target[:400], dtype=torch.long)
    monkeypatch.setattr(tessera.data, "load_images", lambda name, split, root=None: (x, y))
    monkeypatch.setattr(tessera.mixture, "plot_mixture_weights", _fake_plot)   # matplotlib: seconds per figure


def _fake_plot(weights, path, title=None):
    """Stands in for the heatmap (tested on its own): writes the signatures as text."""
    from pathlib import Path
    from tessera.mixture.plots import weights_of

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(repr({t: w.argmax(-1).tolist() for t, w in weights_of(weights).items()}))
    return path


@pytest.fixture
def step_counter(monkeypatch):
    """``counter["n"]`` counts engine steps; set ``counter["kill_at"]`` to raise Killed before that step."""
    counter = {"n": 0, "kill_at": None}
    orig = Trainer.train_step

    def train_step(self, step):
        if counter["kill_at"] is not None and counter["n"] >= counter["kill_at"]:
            raise Killed(f"killed after {counter['n']} steps")
        counter["n"] += 1
        return orig(self, step)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    return counter
