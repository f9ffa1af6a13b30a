"""The docstring examples of tessera.compat and the compat experiments' protocol run and pass."""
import doctest
import importlib

import pytest

MODULES = ["tessera.compat", "tessera.compat.apps", "tessera.compat.aux", "tessera.compat.bn",
           "tessera.compat.components", "tessera.compat.measure", "tessera.compat.methods",
           "tessera.compat.models", "tessera.compat.plots", "tessera.compat.schemes", "tessera.compat.tasks",
           "tessera.experiments.compat_protocol"]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0, result
