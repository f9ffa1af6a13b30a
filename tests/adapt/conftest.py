"""Fixtures for the adaptation tests: one CPU thread, tiny generated domains."""
from __future__ import annotations

import pytest
import torch
from adapt_helpers import make_domain

from tessera.adapt import Domain


@pytest.fixture(autouse=True)
def _one_thread():
    """Small ops on a shared CPU: one thread is fastest and deterministic."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def domains() -> tuple[list[Domain], Domain]:
    sources = [make_domain("a", seed=1), make_domain("b", shift=0.2, seed=2)]
    return sources, make_domain("t", shift=0.6, labeled=False, seed=3)
