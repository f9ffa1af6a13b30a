"""Fixtures for MUiR tests: the shared data root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def muir_data_root() -> Path:
    """``$TESSERA_DATA`` or ``../shared/data`` when it holds the MUiR synthetic pickles; skip otherwise."""
    env = os.environ.get("TESSERA_DATA")
    root = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    if not (root / "muir_synthetic" / "train_X.pkl").is_file():
        pytest.skip("MUiR synthetic data absent: set TESSERA_DATA or place it at ../shared/data/muir_synthetic")
    return root
