"""The shared generation core: mix == reference einsum; writer views/gathers; hooks; deepcopy."""
import copy

import pytest
import torch
from torch import nn

from tessera.core import GeneratedModel, Slot, WeightGenerator, WeightWriter, mix, take_parameter
from tessera.errors import ShapeError


def test_mix_dense_and_sparse_match_reference():
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(12, 7, generator=g, dtype=torch.float64)
    coeff = torch.randn(5, 12, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mix(bank, coeff), torch.einsum("lr,rp->lp", coeff, bank))
    idx = torch.randint(0, 12, (5, 3), generator=g)
    c = torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mix(bank, c, idx), (c[..., None] * bank[idx]).sum(1))


def test_mix_one_hot_is_exact():
    bank = torch.randn(4, 100)
    out = mix(bank, torch.eye(4)[[2, 0]])
    assert torch.equal(out[0], bank[2]) and torch.equal(out[1], bank[0])
    out = mix(bank, torch.ones(2, 1), torch.tensor([[3], [1]]))
    assert torch.equal(out[0], bank[3]) and torch.equal(out[1], bank[1])


def test_mix_bad_shapes():
    with pytest.raises(ShapeError, match="columns"):
        mix(torch.randn(3, 4), torch.randn(2, 5))
    with pytest.raises(ShapeError, match="same shape"):
        mix(torch.randn(3, 4), torch.randn(2, 5), torch.zeros(2, 4, dtype=torch.long))


class _TiedMLP(WeightGenerator):
    """Two Linear(4,4) layers whose weights are mixtures of K=3 templates (a tiny template net)."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        mods = [net[0], net[2]]
        for m in mods:
            take_parameter(m, "weight")
        self.bank = nn.Parameter(torch.randn(3, 16))
        self.logits = nn.Parameter(torch.zeros(2, 3))
        self.writer = WeightWriter([Slot(m, "weight", torch.Size([4, 4]), offset=16 * i) for i, m in enumerate(mods)])

    def source(self):
        return mix(self.bank, self.logits.softmax(-1)).reshape(-1)  # (2, 16) -> (32,)


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    return GeneratedModel(net, _TiedMLP(net))


def test_generated_forward_backward_and_copy():
    net = _net()
    x = torch.randn(5, 4)
    y = net(x)
    ref_w = net.generator.logits.softmax(-1) @ net.generator.bank
    m = net.model
    ref = torch.relu(x @ ref_w[0].view(4, 4).T + m[0].bias) @ ref_w[1].view(4, 4).T + m[2].bias
    torch.testing.assert_close(y, ref)
    y.sum().backward()
    assert net.generator.bank.grad is not None and net.generator.logits.grad is not None
    assert net.model[0].weight.grad_fn is None  # released after forward
    assert "model.0.weight" not in net.state_dict() and "generator.bank" in net.state_dict()
    net2 = copy.deepcopy(net)
    torch.testing.assert_close(net2(x), net(x))
    with torch.no_grad():
        net2.generator.bank.add_(1.0)
    assert not torch.allclose(net2(x), net(x))  # the copy generates into its own modules


def test_gather_slots():
    src = torch.arange(10.0)
    m = nn.Linear(2, 2)
    take_parameter(m, "weight")
    w = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), index=torch.tensor([[9, 0], [3, 3]]))])
    w.write(src)
    assert m.weight.tolist() == [[9.0, 0.0], [3.0, 3.0]]
    with pytest.raises(ShapeError):
        WeightWriter([Slot(m, "weight", torch.Size([2, 2]), index=torch.tensor([1]))])


def test_take_parameter_unknown_name():
    with pytest.raises(ShapeError, match="no parameter"):
        take_parameter(nn.Linear(2, 2), "kernel")


def test_attach_hooks_on_a_custom_root():
    class Root(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
            self.gen = _TiedMLP(self.body)
            self.gen.attach(self)

        def forward(self, x):
            return self.body(x)

    torch.manual_seed(0)
    r = Root()
    x = torch.randn(3, 4)
    y = r(x)
    y.sum().backward()
    assert r.gen.bank.grad is not None
    torch.testing.assert_close(copy.deepcopy(r)(x), y.detach())
