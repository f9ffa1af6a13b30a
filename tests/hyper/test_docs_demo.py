"""The docstring examples run, and the demo showcase returns its rows quickly."""
import doctest
import importlib

import pytest

from tessera.hyper.demo import demo


@pytest.mark.parametrize("name", ["config", "decompose", "hypermodules", "search", "accounting", "api", "views",
                                  "targets"])
def test_docstring_examples_run(name):
    mod = importlib.import_module(f"tessera.hyper.{name}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_demo_rows(tmp_path):
    rows = demo(tmp_path, generations=3, steps=3, final_steps=2)
    metrics = [r["metric"] for r in rows]
    assert metrics == ["test_rmse", "test_rmse", "active_hypermodules", "parameters", "generation_grouping_found"]
    assert rows[2]["start"] == 12 and rows[2]["value"] <= 12
    assert (tmp_path / "muir_alignment.png").is_file()
