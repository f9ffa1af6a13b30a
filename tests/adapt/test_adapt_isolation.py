"""Adaptation moves only the target's own parameters; every other parameter and, with the target's BN
statistics frozen (``target_bn="eval"``, the default), every buffer stays bit-identical."""
from __future__ import annotations

import pytest
import torch
from adapt_helpers import make_domain, tiny_comp, tiny_iso

from tessera.adapt import adapt_adda, adapt_m3sda, finetune_target, reestimate_stats, train_sources
from tessera.adapt.init import learned_init
from tessera.adapt.isolation import changed, snapshot
from tessera.mixture import count_parameters


def _trained(model, sources):
    train_sources(model, sources, steps=3, batch_size=16, seed=0)
    model.add_target("t", **({"from_domain": "a"} if hasattr(model, "net") else {}))
    return model


ADAPT = {
    "adda": lambda m, s, t, bn: adapt_adda(m, s, t, steps=4, batch_size=16, pool=16, lr=0.1, target_bn=bn),
    "m3sda": lambda m, s, t, bn: adapt_m3sda(m, s, t, steps=4, batch_size=16, pool=16, lr=0.1, target_bn=bn),
    "supervised": lambda m, s, t, bn: finetune_target(m, make_domain("t", shift=0.6, seed=3), steps=4,
                                                       batch_size=16, lr=0.1, target_bn=bn),
}


def _moved(build, method, bn, domains):
    """(model, names of every parameter and buffer that changed) after one adaptation run."""
    sources, target = domains
    model = _trained(build(), sources)
    everything = snapshot(model, buffers=True)
    ADAPT[method](model, sources, target, bn)
    return model, changed(model, everything)


@pytest.mark.parametrize("method", list(ADAPT))
def test_only_target_mixture_weights_change(domains, method):
    model, moved = _moved(tiny_comp, method, "eval", domains)
    assert moved == ["net.mixture.t"]                                   # no other parameter, no buffer at all
    assert count_parameters(model.target_parameters("t").values()) == 3 * 2      # L x K


@pytest.mark.parametrize("method", ["adda", "m3sda"])
def test_updated_target_statistics_are_the_targets_own(domains, method):
    _, moved = _moved(tiny_comp, method, "train", domains)
    assert "net.mixture.t" in moved and "net.stats.t" in moved       # target_bn="train" really updates them
    assert all(k in ("net.mixture.t", "net.stats.t") or k.endswith("num_batches_tracked") for k in moved), moved


@pytest.mark.parametrize("method", list(ADAPT))
def test_only_target_input_adapter_changes(domains, method):
    model, moved = _moved(tiny_iso, method, "eval", domains)
    assert moved == ["adapters.t.bn.bias", "adapters.t.bn.weight", "adapters.t.conv.weight"]   # no BN buffer
    assert count_parameters(model.target_parameters("t").values()) == 8 * 1 * 4 * 4 + 2 * 8   # conv + BN affine


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
    before = {k: v.clone() for k, v in model.net.stats.named_buffers()}
    reestimate_stats(model, target)
    assert not torch.equal(before["t"], model.net.stats.t)
    assert all(torch.equal(v, getattr(model.net.stats, k)) for k, v in before.items() if k != "t")
    logits, coef = learned_init(model, make_domain("t", shift=0.6, seed=3), ["a", "b"], steps=5, batch_size=16)
    assert changed(model, params) == []
    assert logits.shape == (3, 2) and abs(sum(coef.values()) - 1) < 1e-6


def test_reestimated_target_statistics_are_the_target_mean_and_variance(domains):
    """By hand: with equal-size batches, the re-estimated running mean is the mean of the target's
    pre-BN activations and the running variance the mean of the batches' unbiased variances."""
    sources, target = domains                                   # 48 target images, batches of 16
    model = tiny_iso()
    model.add_target("t")
    src_bn = {k: v.clone() for k, v in model.input_adapter.bn.state_dict().items()}
    reestimate_stats(model, target, batch_size=16)
    with torch.no_grad():
        z = model.adapters.t.conv(target.x)                     # (48, 8, 2, 2) pre-BN
    per = z.split(16)
    mean = torch.stack([b.mean((0, 2, 3)) for b in per]).mean(0)
    var = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in per]).mean(0)
    torch.testing.assert_close(model.adapters.t.bn.running_mean, mean)
    torch.testing.assert_close(model.adapters.t.bn.running_var, var)
    assert all(torch.equal(v, model.input_adapter.bn.state_dict()[k]) for k, v in src_bn.items())
