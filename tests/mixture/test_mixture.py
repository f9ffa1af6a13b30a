"""Template-mixture networks: exactness, export, gradients, every registered block, bad input."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tessera.mixture.network as network_mod
from tessera.errors import ConfigError, ShapeError, TesseraError
from tessera.mixture import (MixtureNet, TemplateBank, export, extract_signature, freeze, max_difference,
                             multitask_model, set_signature)
from tessera.nn import BLOCKS

SMALL = dict(channels=8, head_channels=(16, 16), patch=4, dropout=0.0)
X = torch.rand(4, 1, 16, 16)


def _net(block="inverted_residual", K=3, L=4, tasks=None, **kw):
    torch.manual_seed(0)
    return MixtureNet.from_isometric(tasks or {"a": 10, "b": 5}, num_templates=K, depth=L, block=block,
                                     **{**SMALL, **kw})


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("bn", ["layer", "mixed"])
def test_one_hot_layer_equals_its_template_exactly(block, bn):
    net = _net(block, K=3, L=4, bn=bn, signature=[2, 0, 1, 2])
    h = torch.randn(2, 8, 4, 4)
    net.refresh()
    try:
        for layer, k in enumerate([2, 0, 1, 2]):
            tmpl = net.bank.template(k)
            for s in net.bank.layout:
                got = getattr(net.blocks[layer].get_submodule(s.module), s.attr)
                assert torch.equal(got, getattr(tmpl.get_submodule(s.module), s.attr)), s.name
            with torch.no_grad():
                assert torch.equal(net.blocks[layer](h.clone()), tmpl(h.clone()))
    finally:
        net.release()


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("bn", ["layer", "mixed", "patch"])
def test_export_gives_identical_outputs(block, bn):
    net = _net(block, bn=bn)
    net.train()
    for t in ("a", "b"):          # fill each task's BN statistics
        net(X, task=t)
    set_signature(net, "b", [1, 1, 0, 2])
    for task in ("a", "b"):
        plain = export(net, task)
        assert not any(isinstance(m, MixtureNet) for m in plain.modules())
        assert max_difference(net, plain, X, task) == 0.0
    shared = export(net, "b")
    assert shared.blocks[0].get_submodule(net.bank.layout[0].module) is not None
    w = [getattr(b.get_submodule(net.bank.layout[0].module), net.bank.layout[0].attr) for b in shared.blocks]
    assert w[0] is w[1] and w[0] is not w[2]          # one-hot layers on one template share parameters


@pytest.mark.parametrize("block", BLOCKS.names())
def test_gradients_reach_templates_and_mixture_logits(block):
    net = _net(block, bn="patch")
    F.cross_entropy(net(X, task="a"), torch.randint(0, 10, (4,))).backward()
    assert net.bank.weight.grad is not None and net.bank.weight.grad.abs().sum() > 0
    assert net.mixture["a"].grad is not None and net.mixture["a"].grad.abs().sum() > 0
    assert net.patches["a"].grad.abs().sum() > 0
    assert net.mixture["b"].grad is None and net.patches["b"].grad is None   # patches are per task


def test_one_mix_call_per_forward(monkeypatch):
    net = _net(L=6)
    calls = []
    real = network_mod.mix
    monkeypatch.setattr(network_mod, "mix", lambda *a, **k: calls.append(1) or real(*a, **k))
    net(X)
    assert len(calls) == 1


def test_bn_running_stats_are_per_task_and_never_mixed():
    net = _net(bn="mixed")
    names = {s.name for s in net.bank.layout}
    assert "bn1.weight" in names and not any("running" in n for n in names)
    before = {t: getattr(net.stats, t).clone() for t in net.tasks}
    net.train()
    net(X * 5 + 1, task="a")
    assert not torch.equal(getattr(net.stats, "a"), before["a"])
    assert torch.equal(getattr(net.stats, "b"), before["b"])
    assert net.blocks[0].bn1.running_mean.data_ptr() == getattr(net.stats, "a").data_ptr()


def test_patches_are_per_task():
    net = _net(bn="patch")
    assert set(net.patches.keys()) == {"a", "b"}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    before = net.patches["b"].detach().clone()
    F.cross_entropy(net(X, task="a"), torch.zeros(4, dtype=torch.long)).backward()
    opt.step()
    assert torch.equal(net.patches["b"], before)
    assert not torch.equal(net.patches["a"], before)


def test_signature_extraction_and_freeze():
    logits = torch.tensor([[0.0, 3.0, 0.0], [5.0, 0.0, 0.0]])
    idx, conf = extract_signature(logits)
    assert idx.tolist() == [1, 0]
    assert torch.allclose(conf, logits.softmax(-1).max(-1).values)
    net = _net()
    sig = net.signature("a")[0]
    assert freeze(net, "a") == sig
    assert net.coefficients("a").max(-1).values.eq(1.0).all() and not net.mixture["a"].requires_grad


@pytest.mark.parametrize("kind,expect", [("sequential", [0, 0, 1, 1]), ("cyclic", [0, 1, 0, 1]),
                                         ("diag", [0, 1, 0, 1])])
def test_named_signatures(kind, expect):
    net = _net(K=2, signature=kind)
    assert net.signature("a") == (expect, [1.0] * 4)
    assert not net.mixture["a"].requires_grad
    assert sorted(_net(K=2, signature="random").signature("a")[0]) == [0, 0, 1, 1]


def test_block_input_concat_variant_table6():
    net = _net("inverted_residual", block_input="concat", signature="sequential")
    assert net.blocks[0].conv_pw.in_channels == 16           # block sees cat(h, z0)
    assert net(X).shape == (4, 10)
    assert max_difference(net, export(net), X) == 0.0


def test_any_user_block_with_layernorm():
    class MLPBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(6), nn.Linear(6, 12), nn.Linear(12, 6)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(self.norm(x))))

    net = MixtureNet(MLPBlock(), num_templates=2, depth=3, tasks={"t": 4}, embed_dim=6, bn="patch")
    assert [s.name for s in net.bank.norm_layout] == ["norm.weight", "norm.bias"]
    x = torch.randn(5, 6)
    net(x).sum().backward()
    assert net.bank.weight.grad is not None
    assert max_difference(net, export(net), x) == 0.0


def test_state_dict_roundtrip_and_deepcopy():
    net = _net(bn="patch")
    net.train()
    net(X, task="b")
    other = _net(bn="patch")
    torch.manual_seed(1)
    with torch.no_grad():
        other.bank.weight.normal_()
    other.load_state_dict(net.state_dict())
    net.eval(), other.eval()
    for t in ("a", "b"):
        assert torch.equal(net(X, task=t), other(X, task=t))
    assert not any(k.startswith("blocks.") and k.endswith(("conv_pw.weight", "running_mean")) for k in net.state_dict())
    cp = copy.deepcopy(net)
    assert torch.equal(cp(X, task="a"), net(X, task="a"))
    cp.train()
    cp(X * 3, task="a")  # updates the copy's statistics only
    assert cp.blocks[0].bn1.running_mean.data_ptr() == getattr(cp.stats, "a").data_ptr()
    assert not torch.equal(getattr(cp.stats, "a"), getattr(net.stats, "a"))
    d = copy.deepcopy(net).double()
    assert d(X.double(), task="a").dtype == torch.float64
    assert d.blocks[0].bn1.running_mean.dtype == torch.float64


def test_bad_inputs_give_one_line_errors():
    errors = []
    with pytest.raises(ConfigError, match="num_templates") as e:
        _net(K=0)
    errors.append(e)
    sizes = iter([8, 16])
    with pytest.raises(ShapeError, match="one architecture") as e:
        TemplateBank(lambda: BLOCKS.get("basic_residual")(next(sizes)), 2)
    errors.append(e)
    with pytest.raises(ConfigError, match="5 entries but the network has 4 layers") as e:
        _net(signature=[0, 1, 2, 0, 1])
    errors.append(e)
    net = _net()
    with pytest.raises(ConfigError, match="unknown task 'zzz'") as e:
        net(X, task="zzz")
    errors.append(e)
    with pytest.raises(ConfigError, match="template 7") as e:
        set_signature(net, "a", [7, 0, 0, 0])
    errors.append(e)
    with pytest.raises(ConfigError, match="bn mode"):
        _net(bn="batch")
    for e in errors:
        assert isinstance(e.value, TesseraError) and "\n" not in str(e.value)


def test_multitask_variants_table8():
    tasks = {"a": 10, "b": 10}
    for v, (k, bn, learned) in {"baseline": (4, "layer", False), "baseline_patches": (4, "patch", False),
                                "mixture": (2, "mixed", True), "mixture_patches": (2, "patch", True)}.items():
        net = multitask_model(v, tasks, depth=4, num_templates=2, **SMALL)
        assert (net.num_templates, net.bn, net.mixture["a"].requires_grad) == (k, bn, learned)
        assert net(X, task="b").shape == (4, 10)
    with pytest.raises(ConfigError, match="num_templates"):
        multitask_model("mixture", tasks, depth=4, **SMALL)
