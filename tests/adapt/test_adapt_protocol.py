"""Table 9 initializations, the per-seed protocol on tiny domains, and resumable per-seed results."""
from __future__ import annotations

import torch
from adapt_helpers import make_domain, tiny_comp, tiny_iso

from tessera.adapt import AdaptConfig, accuracy_init, interpolate, random_init, run_compositional, run_isometric
from tessera.experiments import RunOptions
from tessera.experiments.da_common import run_seeds
from tessera.results import Report


def test_interpolation_is_a_convex_combination_of_mixture_weights():
    w = {"a": torch.tensor([[0.9, 0.1], [0.2, 0.8]]), "b": torch.tensor([[0.5, 0.5], [0.6, 0.4]])}
    out = interpolate(w, {"a": 1.0, "b": 3.0}).softmax(-1)
    assert torch.allclose(out, 0.25 * w["a"] + 0.75 * w["b"], atol=1e-6)
    model = tiny_comp()
    acc = accuracy_init(model, {"a": 80.0, "b": 20.0}).softmax(-1)
    expect = 0.8 * model.net.coefficients("a").detach() + 0.2 * model.net.coefficients("b").detach()
    assert torch.allclose(acc, expect, atol=1e-6)
    assert random_init(model, seed=1).shape == (3, 2)


def _cfg() -> AdaptConfig:
    return AdaptConfig(pretrain_steps=3, batch_size=16, adapt_steps=2, adapt_batch=16, pool=16, ft_steps=2,
                       learned_steps=2)


def test_protocol_rows_and_parameter_counts():
    sources = [make_domain("a", seed=1), make_domain("b", shift=0.2, seed=2)]
    tests = [make_domain("a", n=12, seed=4), make_domain("b", n=12, shift=0.2, seed=5)]
    ttr, tte = make_domain("t", shift=0.6, seed=3), make_domain("t", n=12, shift=0.6, seed=6)
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, _cfg(), log=lambda m: None)
    ri = run_isometric(tiny_iso(), sources, ttr, tte, tests, _cfg(), log=lambda m: None)
    for key in ("comp_source_only", "comp_adda", "comp_m3sda", "comp_supervised", "comp_stats_only",
                "init:random", "ft:learned", "source:a"):
        assert 0.0 <= rc["acc"][key] <= 100.0
    assert rc["params"]["comp_adda"] == rc["params"]["comp_m3sda"] == 6        # L x K of the target
    assert ri["params"]["ia_adda"] == 8 * 16 + 16                                # input adapter conv + BN
    assert rc["info"]["init_source"] in ("a", "b")
    assert set(ri["acc"]) >= {"source_only", "ia_adda", "ia_m3sda", "ia_supervised", "source:b"}


def test_run_seeds_saves_each_seed_and_resumes(tmp_path):
    calls = []

    def seed_fn(budget, data, seed, log=print):
        calls.append(seed)
        return {"seed": seed}

    opts = RunOptions(out=tmp_path, resume=True)
    first = run_seeds("x", opts, None, 2, {"a": 1}, None, seed_fn)
    again = run_seeds("x", opts, None, 3, {"a": 1}, None, seed_fn)
    changed = run_seeds("x", opts, None, 1, {"a": 2}, None, seed_fn)   # other settings: not reused
    assert first == [{"seed": 0}, {"seed": 1}] and again[2] == {"seed": 2}
    assert calls == [0, 1, 2, 0]
    assert (tmp_path / "x" / "seed2.json").is_file() and changed == [{"seed": 0}]
    assert Report("x").to_dict()["rows"] == []
