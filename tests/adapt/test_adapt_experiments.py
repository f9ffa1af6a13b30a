"""The DA experiments are registered, validate their budget, and read the shared data as documented."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tessera.errors import ConfigError
from tessera.experiments import RunOptions


def _shared() -> Path | None:
    env = os.environ.get("TESSERA_DATA")
    cand = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    return cand if (cand / "office_caltech10_surf").is_dir() else None


def test_registered():
    from tessera.experiments import EXPERIMENTS

    assert "da-digits" in EXPERIMENTS and "da-office" in EXPERIMENTS


@pytest.mark.parametrize("module", ["da_digits", "da_office"])
def test_unknown_budget(module):
    import importlib

    run = importlib.import_module(f"tessera.experiments.{module}").run
    with pytest.raises(ConfigError, match="budget"):
        run(RunOptions(budget="huge"))


def test_usps_in_mnist_format():
    from tessera.experiments.da_digits import usps_format

    x = torch.ones(1, 1, 16, 16)
    framed = usps_format(x, 28, "mnist")
    assert framed.shape == (1, 1, 28, 28) and framed[..., 4:24, 4:24].min() > 0.99
    assert framed[..., :4, :].abs().max() == 0 and usps_format(x, 28, "resize").min() > 0.99


@pytest.mark.shared_data
def test_office_domains_are_split_and_standardised():
    root = _shared()
    if root is None:
        pytest.skip("shared data absent")
    from tessera.experiments.da_office import load_domains

    src, tests, wtr, wte = load_domains(root, seed=0)
    assert [d.name for d in src] == ["amazon", "caltech", "dslr"] and wtr.name == wte.name == "webcam"
    assert len(wtr) + len(wte) == 295 and sum(len(d) for d in src + tests) == 958 + 1123 + 157
    pooled = torch.cat([d.x for d in src])
    assert pooled.mean().abs() < 1e-3 and abs(float(pooled.std()) - 1) < 0.05   # source statistics only
