"""Fixtures for MUiR tests: one torch thread (tiny ops; avoids OpenMP contention), the shared data root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def muir_data_root() -> Path:
    """``$TESSERA_DATA`` or ``../shared/data`` when it holds the MUiR synthetic pickles; skip otherwise."""
    env = os.environ.get("TESSERA_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (root / "muir_synthetic" / "train_X.pkl").is_file():
        pytest.skip("MUiR synthetic data absent: set TESSERA_DATA or place it at ../shared/data/muir_synthetic")
    return root
