"""The docstring examples run, and the demo showcase returns its rows quickly."""
import doctest
import importlib

import pytest

from tessera.hyper.demo import demo, own_models


@pytest.mark.parametrize("name", ["config", "decompose", "hypermodules", "search", "accounting", "api", "views",
                                  "targets", "vectorize"])
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


def test_own_models_rows():
    rows = own_models(None, init_steps=3, generations=2, steps=2, final_steps=2)
    cnn, tf, both = rows
    assert cnn["targeted"] == "conv2.weight, fc1.weight" and "self_attn.in_proj_weight" in tf["targeted"]
    assert cnn["export_identical"] and tf["export_identical"]
    assert cnn["locations"] == 9 * 2 * 2 + 32 * 4 and tf["locations"] == 3 * 4 + 4 + 8 + 8 == both["locations"] - 164
    assert 0 <= both["hypermodules_shared_across_architectures"] <= both["hypermodules_active"] <= 196
