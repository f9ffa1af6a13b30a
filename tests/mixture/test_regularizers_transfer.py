"""Regularizers on hand examples; transfer trains only the allowed parameters; plots."""
import math

import pytest
import torch
import torch.nn.functional as F

from tessera.errors import ConfigError
from tessera.mixture import (MixtureNet, accuracy_coefficients, clustering, count_parameters, entropy, from_source,
                             interpolate, learn_interpolation, mixture_clustering, plot_mixture_weights,
                             source_accuracies, trainable_parameters)

SMALL = dict(channels=8, head_channels=(16, 16), patch=4, dropout=0.0)
X = torch.rand(8, 1, 16, 16)
Y = torch.randint(0, 10, (8,))


def _net(bn="patch"):
    torch.manual_seed(0)
    return MixtureNet.from_isometric({"a": 10, "b": 10}, num_templates=3, depth=4, bn=bn, **SMALL)


def test_clustering_regularizer_hand_example():
    bank = torch.tensor([[0.0, 0.0], [3.0, 4.0]])                 # ||theta_1 - theta_0|| = 5
    coeff = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    # layer 0: theta_bar = (1.5, 2): distances 2.5, 2.5; layer 1: one-hot -> 0
    assert clustering(bank, coeff, alpha=2.0, g="square").item() == pytest.approx(2.0 * 6.25)
    assert clustering(bank, coeff, alpha=1.0, g="norm").item() == pytest.approx(2.5, rel=1e-6)
    assert clustering(bank, coeff, normalize=True).item() == pytest.approx(6.25 / 2)
    # reference by brute force on random data
    g = torch.Generator().manual_seed(0)
    b, c = torch.randn(4, 30, generator=g), torch.rand(5, 4, generator=g).softmax(-1)
    bar = c @ b
    ref = (c * ((bar[:, None, :] - b[None]) ** 2).sum(-1)).sum()
    assert clustering(b, c).item() == pytest.approx(ref.item(), rel=1e-5)


def test_clustering_gradients_pull_towards_one_hot_and_templates_together():
    bank = torch.tensor([[0.0], [2.0]], requires_grad=True)
    logits = torch.tensor([[0.3, 0.0]], requires_grad=True)
    clustering(bank, logits.softmax(-1)).backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]            # the larger weight grows
    assert bank.grad[0, 0] < 0 < bank.grad[1, 0]                  # templates move towards theta_bar


def test_entropy_values():
    assert entropy(torch.zeros(3, 4)).item() == pytest.approx(3 * math.log(4))
    assert entropy(torch.tensor([[0.0, -1e4]])).item() == 0.0


def test_mixture_clustering_on_model():
    net = _net()
    r = mixture_clustering(net, ["a", "b"], alpha=0.1)
    r.backward()
    assert r.item() > 0 and net.bank.weight.grad is not None and net.mixture["b"].grad is not None


def _step(net, task, params, steps=2):
    opt = torch.optim.SGD(params, lr=0.5)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(net(X, task=task), Y).backward()
        opt.step()


def test_transfer_trains_only_allowed_parameters():
    net = _net()
    from_source(net, "new", "a", num_classes=10)
    assert torch.equal(net.mixture["new"], net.mixture["a"])
    params = trainable_parameters(net, "new", ("mixture", "bn", "logits"))
    expect = 4 * 3 + net.patches["new"].numel() + 16 * 10 + 10
    assert count_parameters(params) == expect
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _step(net, "new", params)
    allowed = {"mixture.new", "patches.new", "heads.new.weight", "heads.new.bias", "stats.new"}
    for k, v in net.state_dict().items():
        if k in allowed:
            assert not torch.equal(v, before[k]), k
        elif not k.endswith("num_batches_tracked"):
            assert torch.equal(v, before[k]), k
    with pytest.raises(ConfigError, match="bn='patch'"):
        trainable_parameters(_net("mixed"), "a", ("mixture", "bn"))


def test_accuracy_based_and_learned_interpolation():
    net = _net()
    assert accuracy_coefficients({"a": 0.9, "b": 0.3}) == {"a": 0.75, "b": 0.25}
    assert accuracy_coefficients({"a": 0.9, "b": 0.1}, chance=0.1) == {"a": 1.0, "b": 0.0}
    acc = source_accuracies(net, ["a", "b"], X, Y)
    assert set(acc) == {"a", "b"} and all(0 <= v <= 1 for v in acc.values())
    interpolate(net, "new", {"a": 0.25, "b": 0.75}, num_classes=10)
    want = 0.25 * net.coefficients("a") + 0.75 * net.coefficients("b")
    torch.testing.assert_close(net.coefficients("new"), want, atol=1e-5, rtol=1e-4)
    bank = net.bank.weight.detach().clone()
    c = learn_interpolation(net, "new", ["a", "b"], X, Y, steps=3, lr=0.5)
    assert sum(c.values()) == pytest.approx(1.0) and c["a"] != 0.5
    assert torch.equal(net.bank.weight, bank) and net.bank.weight.requires_grad
    want = c["a"] * net.coefficients("a") + c["b"] * net.coefficients("b")
    torch.testing.assert_close(net.coefficients("new"), want, atol=1e-5, rtol=1e-4)


def test_heatmap_png(tmp_path):
    net = _net()
    p = plot_mixture_weights(net, tmp_path / "mw.png", title="test")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
