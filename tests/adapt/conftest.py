"""Fixtures for the adaptation tests: tiny generated domains."""
from __future__ import annotations

import pytest
from adapt_helpers import make_domain

from tessera.adapt import Domain


@pytest.fixture
def domains() -> tuple[list[Domain], Domain]:
    sources = [make_domain("a", seed=1), make_domain("b", shift=0.2, seed=2)]
    return sources, make_domain("t", shift=0.6, labeled=False, seed=3)
