"""The docstring examples of tessera.mixture (and the experiment store) run."""
import doctest
import importlib

import pytest

MODULES = ["tessera.mixture", "tessera.mixture.organization", "tessera.mixture.training", "tessera.mixture.regularizers",
           "tessera.mixture.signatures", "tessera.mixture.templates", "tessera.mixture.transfer",
           "tessera.mixture.network", "tessera.mixture.multitask", "tessera.mixture.plots",
           "tessera.experiments.units"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
