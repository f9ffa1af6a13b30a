"""Every docstring example of tessera.adapt (and the DA experiments' helpers) runs as written."""
import doctest
import importlib

import pytest

MODULES = ["tessera.adapt", "tessera.adapt.adversarial", "tessera.adapt.moments", "tessera.adapt.domains",
           "tessera.adapt.models", "tessera.adapt.init", "tessera.adapt.isolation", "tessera.adapt.training",
           "tessera.experiments.da_digits"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_public_surface_is_small():
    import tessera.adapt as adapt

    assert len(adapt.__all__) <= 15 and all(hasattr(adapt, n) for n in adapt.__all__)
