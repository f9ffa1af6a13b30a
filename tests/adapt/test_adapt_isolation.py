"""Adaptation moves only the target's own parameters; every other parameter stays bit-identical."""
from __future__ import annotations

import pytest
import torch
from adapt_helpers import make_domain, tiny_comp, tiny_iso

from tessera.adapt import (adapt_adda, adapt_m3sda, changed, count_params, finetune_target, learned_init,
                           reestimate_stats, snapshot, train_sources)


def _trained(model, sources):
    train_sources(model, sources, steps=3, batch_size=16, seed=0)
    model.add_target("t", **({"from_domain": "a"} if hasattr(model, "net") else {}))
    return model


ADAPT = {
    "adda": lambda m, s, t: adapt_adda(m, s, t, steps=4, batch_size=16, pool=16, lr=0.1),
    "m3sda": lambda m, s, t: adapt_m3sda(m, s, t, steps=4, batch_size=16, pool=16, lr=0.1),
    "supervised": lambda m, s, t: finetune_target(m, make_domain("t", shift=0.6, seed=3), steps=4, batch_size=16,
                                                   lr=0.1),
}


@pytest.mark.parametrize("method", list(ADAPT))
def test_only_target_mixture_weights_change(domains, method):
    sources, target = domains
    model = _trained(tiny_comp(), sources)
    params, everything = snapshot(model), snapshot(model, buffers=True)
    ADAPT[method](model, sources, target)
    assert changed(model, params) == ["net.mixture.t"]
    assert count_params(model.target_parameters("t")) == 3 * 2      # L x K
    # buffers: only the target's own BN statistics (and BN batch counters) may move
    moved = [k for k in changed(model, everything) if k != "net.mixture.t"]
    assert all(k == "net.stats.t" or k.endswith("num_batches_tracked") for k in moved), moved


@pytest.mark.parametrize("method", list(ADAPT))
def test_only_target_input_adapter_changes(domains, method):
    sources, target = domains
    model = _trained(tiny_iso(), sources)
    params = snapshot(model)
    ADAPT[method](model, sources, target)
    moved = changed(model, params)
    assert moved and all(k.startswith("adapters.t.") for k in moved), moved
    assert count_params(model.target_parameters("t")) == 8 * 1 * 4 * 4 + 2 * 8   # conv + BN affine


def test_adapt_mode_restores_train_flags(domains):
    sources, _ = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    model.train()
    with model.adapt_mode("t"):
        assert not model.net.input_adapter.training and model.net.blocks.training
    assert all(m.training for m in model.modules())


def test_stats_reestimation_and_learned_init_touch_no_parameter(domains):
    sources, target = domains
    model = _trained(tiny_comp(), sources)
    params = snapshot(model)
    before = model.net.stats.t.clone()
    reestimate_stats(model, target)
    assert not torch.equal(before, model.net.stats.t)
    logits, coef = learned_init(model, make_domain("t", shift=0.6, seed=3), ["a", "b"], steps=5, batch_size=16)
    assert changed(model, params) == []
    assert logits.shape == (3, 2) and abs(sum(coef.values()) - 1) < 1e-6
