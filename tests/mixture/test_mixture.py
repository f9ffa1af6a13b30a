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


def _bn_block():
    return nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))


def test_new_tasks_start_from_the_documented_init():
    """Task i's "random" logits are N(0, init_std) drawn from seed + i; patches start at the prototype's
    gamma / beta, statistics at 0 / 1, the head at N(0, 0.01) weights and zero bias; a fixed signature gives
    frozen one-hot logits."""
    net = MixtureNet(_bn_block, num_templates=3, depth=2, tasks={"a": 50, "b": 50}, embed_dim=16, bn="patch",
                     init_std=2.0, seed=5)
    for i, t in enumerate(("a", "b")):
        ref = torch.randn(2, 3, generator=torch.Generator().manual_seed(5 + i)) * 2.0
        assert torch.equal(net.mixture[t].detach(), ref) and net.mixture[t].requires_grad
        assert torch.equal(net.patches[t].detach(), torch.tensor([[1.0] * 4 + [0.0] * 4] * 2))
        assert torch.equal(getattr(net.stats, t), torch.tensor(([0.0] * 4 + [1.0] * 4) * 2))
        w = net.heads[t].weight.detach()
        assert w.shape == (50, 16) and 0.008 < w.std().item() < 0.012 and abs(w.mean().item()) < 0.002
        assert torch.equal(net.heads[t].bias.detach(), torch.zeros(50))
    plain = MixtureNet(_bn_block, num_templates=3, depth=2, tasks=["a"])                  # init_std 1, seed 0
    assert torch.equal(plain.mixture["a"].detach(), torch.randn(2, 3, generator=torch.Generator().manual_seed(0)))
    uniform = MixtureNet(_bn_block, num_templates=3, depth=2, tasks=["a"], init="uniform")
    assert torch.equal(uniform.mixture["a"].detach(), torch.zeros(2, 3))
    from tessera.mixture.signatures import random_signature
    rand = MixtureNet(_bn_block, num_templates=4, depth=6, tasks=["a"], signature="random", seed=3)
    assert rand.signature()[0] == random_signature(6, 4, seed=3) != random_signature(6, 4, seed=0)
    conv = MixtureNet(lambda: nn.Conv2d(2, 2, 1), num_templates=1, depth=1, tasks=["a"])
    seen = []
    conv.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    conv(torch.rand(1, 2, 3, 3))
    assert seen[-1].is_contiguous()                                    # channels_last is off by default
    fixed = MixtureNet(_bn_block, num_templates=3, depth=2, tasks=["a"], signature=[2, 0])
    assert torch.equal(fixed.mixture["a"].detach(), torch.tensor([[-1e4, -1e4, 0.0], [0.0, -1e4, -1e4]]))
    assert not fixed.mixture["a"].requires_grad and isinstance(fixed.heads["a"], nn.Identity)


def test_add_task_from_another_copies_its_state_and_can_override_the_logits():
    net = MixtureNet(_bn_block, num_templates=2, depth=2, tasks={"a": 3}, embed_dim=4, bn="patch")
    with torch.no_grad():
        net.mixture["a"].copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        net.patches["a"].copy_(torch.arange(16.0).reshape(2, 8))
        getattr(net.stats, "a").copy_(torch.arange(16.0) + 100)
        net.heads["a"].weight.fill_(0.5), net.heads["a"].bias.fill_(-1.0)
    net.mixture["a"].requires_grad_(False)                             # a frozen task stays frozen in its copy
    net.add_task("b", 3, from_task="a", copy_head=True)
    assert torch.equal(net.mixture["b"], torch.tensor([[1.0, 2.0], [3.0, 4.0]])) and not net.mixture["b"].requires_grad
    assert torch.equal(net.patches["b"].detach(), torch.arange(16.0).reshape(2, 8))
    assert torch.equal(getattr(net.stats, "b"), torch.arange(16.0) + 100)
    assert torch.equal(net.heads["b"].weight, torch.full((3, 4), 0.5)) and torch.equal(net.heads["b"].bias,
                                                                                      torch.full((3,), -1.0))
    with torch.no_grad():                                              # copies, not shared tensors
        net.patches["a"].zero_(), getattr(net.stats, "a").zero_()
    assert net.patches["b"].sum() == 120 and getattr(net.stats, "b").sum() == 16 * 100 + 120
    net.add_task("c", 3, from_task="a")                                # without copy_head: a new head
    assert torch.equal(net.heads["c"].bias, torch.zeros(3)) and net.heads["c"].weight.abs().max() < 0.1
    logits = torch.tensor([[0.0, 9.0], [9.0, 0.0]])
    net.add_task("d", None, from_task="a", mixture_logits=logits)
    assert torch.equal(net.mixture["d"], logits) and torch.equal(net.patches["d"], net.patches["b"] * 0)
    net.add_task("e", None, mixture_logits=logits)
    assert net.mixture["e"].requires_grad and isinstance(net.heads["e"], nn.Identity)
    with pytest.raises(ShapeError, match=r"^cannot copy the head of 'a' into 'f': different outputs$"):
        net.add_task("f", 2, from_task="a", copy_head=True)
    with pytest.raises(ShapeError, match=r"^mixture_logits for task 'g' have shape \(2, 3\); expected \(L, K\) = "
                                         r"\(2, 2\)$"):
        net.add_task("g", mixture_logits=torch.zeros(2, 3))


def test_add_task_and_the_constructor_refuse_bad_input_in_one_line():
    net = MixtureNet(_bn_block, num_templates=2, depth=1, tasks={"a": 1}, embed_dim=4)   # depth 1, 1 class: fine
    assert net(torch.randn(2, 4)).shape == (2, 1)
    cases = [
        (lambda: net.add_task("a b", 2), ConfigError,
         r"^task name 'a b' must be non-empty letters, digits, '_' or '-'; rename it$"),
        (lambda: net.add_task("", 2), ConfigError, r"^task name '' must be non-empty"),
        (lambda: net.add_task("a", 2), ConfigError, r"^task 'a' already exists; pick another name$"),
        (lambda: net.add_task("copy", 2), ConfigError,          # a ParameterDict method (not a ModuleDict one)
         r"^task name 'copy' clashes with a module attribute; rename the task$"),
        (lambda: net.add_task("training", 2), ConfigError, r"^task name 'training' clashes"),
        (lambda: net.add_task("b", 2, from_task="zz"), ConfigError,
         r"^unknown task 'zz'; the model has tasks: a; add it with add_task\('zz', ...\)$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=1, tasks=["a", "b"]).set_task("zz"), ConfigError,
         r"^unknown task 'zz'; the model has tasks: a, b; add it with add_task\('zz', ...\)$"),
        (lambda: net.add_task("b", 0), ConfigError,
         r"^task 'b': num_classes must be a positive int \(or None: no head\), got 0$"),
        (lambda: net.add_task("b", True), ConfigError, r"^task 'b': num_classes must be a positive int .*got True$"),
        (lambda: net.add_task("b", 2.0), ConfigError, r"^task 'b': num_classes must be a positive int .*got 2.0$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=1, tasks={"a": 3}), ConfigError,
         r"^task 'a' has 3 classes but the model has no embed_dim; pass embed_dim \(the output adapter's width\)$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=0, tasks=["a"]), ConfigError,
         r"^depth must be an int >= 1, got 0$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=2.0, tasks=["a"]), ConfigError,
         r"^depth must be an int >= 1, got 2.0$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=2, tasks=["a"], bn="batch"), ConfigError,
         r"^unknown bn mode 'batch'; choose one of: layer, mixed, patch$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=2, tasks=["a"], block_input="sum"), ConfigError,
         r"^unknown block_input 'sum'; choose one of: none, add, concat$"),
        (lambda: MixtureNet(_bn_block, num_templates=2, depth=2, tasks=[]), ConfigError,
         r"^a MixtureNet needs at least one task; pass tasks=\{'name': num_classes\}$"),
    ]
    for fn, err, msg in cases:
        with pytest.raises(err, match=msg):
            fn()
    assert net.tasks == ["a"] and list(net.heads) == ["a"]           # a refused task leaves nothing behind
    net.add_task("b", 2)


def test_a_refused_add_task_leaves_no_half_added_task():
    """Regression: a bad num_classes, a missing embed_dim or an incompatible copy_head used to raise after the
    task's logits were registered, leaving a task without head or statistics (forward(task=) then failed)."""
    net = MixtureNet(_bn_block, num_templates=2, depth=1, tasks={"a": 3}, embed_dim=4)
    plain = MixtureNet(_bn_block, num_templates=2, depth=1, tasks=["a"])
    for fn in (lambda: net.add_task("b", 0), lambda: net.add_task("b", 2, from_task="a", copy_head=True),
               lambda: plain.add_task("b", 3)):
        with pytest.raises((ConfigError, ShapeError)):
            fn()
    assert net.tasks == plain.tasks == ["a"] and not hasattr(net.stats, "b") and "b" not in net.heads
    net.add_task("b", 3, from_task="a", copy_head=True)
    assert net(torch.randn(2, 4), task="b").shape == (2, 3)


def test_blocks_are_probed_once_at_the_first_forward():
    """The first forward checks the blocks (a shape-changing block: one-line ShapeError, not a matmul error deep
    in the body); later forwards do not run the probe again."""
    wide = MixtureNet(lambda: nn.Linear(4, 8), num_templates=1, depth=1, tasks=["a"])
    with pytest.raises(ShapeError, match=r"^block of MixtureNet \(Linear\) maps an input of shape \(3, 4\) to \(3, 8\)"):
        wide(torch.randn(3, 4))
    adapted = MixtureNet(lambda: nn.Linear(4, 4), num_templates=1, depth=1, tasks=["a"], input_adapter=nn.Linear(3, 4))
    with pytest.raises(ShapeError, match=r"^the input adapter fails on an input of shape \(2, 5\): mat1 and mat2 shapes "
                                         r"cannot be multiplied \(2x5 and 3x4\); give inputs the input adapter accepts$"):
        adapted(torch.randn(2, 5))
    calls = []

    class Counted(nn.Linear):
        def forward(self, x):
            calls.append(1)
            return super().forward(x)

    net = MixtureNet(lambda: Counted(4, 4), num_templates=2, depth=2, tasks=["a"])
    net(torch.randn(3, 4))
    assert len(calls) == 3                                             # probe of block 0, then 2 layers
    net(torch.randn(3, 4))
    assert len(calls) == 5
    assert net.extra_repr() == "depth=2, K=2, bn='layer', block_input='none', tasks=['a']"


def test_init_isometric_block_and_the_from_isometric_defaults():
    """init_isometric_block: He fan-out conv weights, zero conv biases, unit / zero norm affine (norms without
    affine left alone); from_isometric's documented defaults (one task "main" from an int)."""
    from tessera.mixture.network import init_isometric_block
    torch.manual_seed(0)
    blk = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64), nn.GroupNorm(4, 64, affine=False))
    with torch.no_grad():
        blk[0].bias.fill_(1.0), blk[1].weight.fill_(3.0), blk[1].bias.fill_(2.0)
    init_isometric_block(blk)
    assert torch.equal(blk[0].bias, torch.zeros(64))
    assert torch.equal(blk[1].weight, torch.ones(64)) and torch.equal(blk[1].bias, torch.zeros(64))
    std = (2.0 / (64 * 9)) ** 0.5                                      # fan_out = out_channels * kernel area
    assert abs(blk[0].weight.std().item() / std - 1) < 0.03            # fan_in would give 2x this std
    net = MixtureNet.from_isometric(3, num_templates=1, depth=1)
    assert net.tasks == ["main"] and net.heads["main"].out_features == 3
    torch.manual_seed(0)
    big = MixtureNet.from_isometric(3, num_templates=2, depth=1, channels=64)
    convs = [m for k in range(2) for m in big.bank.template(k).modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.bias is None or not c.bias.any() for c in convs)   # the templates: init_isometric_block
    w = max(convs, key=lambda c: c.weight.numel())                           # He fan-out, not PyTorch's default
    fan_out = w.out_channels // w.groups * w.kernel_size[0] * w.kernel_size[1]
    assert abs(w.weight.std().item() / (2.0 / fan_out) ** 0.5 - 1) < 0.1
    assert (net.in_chans, net.channels, net.patch, net.embed_dim, net.channels_last) == (1, 24, 2, 256, True)
    assert net.input_adapter.conv.stride == (2, 2) and net.dropout.p == 0.2
    rgb = MixtureNet.from_isometric(2, num_templates=1, depth=1, in_chans=3, act_layer=nn.ReLU, **SMALL)
    assert rgb.input_adapter.conv.in_channels == 3 and rgb(torch.rand(2, 3, 8, 8)).shape == (2, 2)
    acts = [type(m) for m in rgb.modules() if isinstance(m, (nn.ReLU, nn.Hardswish))]
    assert set(acts) == {nn.ReLU} and isinstance(rgb.input_adapter.act, nn.ReLU)          # adapters and blocks
    assert isinstance(rgb.output_adapter.act1, nn.ReLU) and isinstance(rgb.output_adapter.act2, nn.ReLU)
    seen = []
    net.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    net(torch.rand(2, 1, 8, 8))                                        # channels_last by default: NHWC strides
    assert seen[-1].is_contiguous(memory_format=torch.channels_last) and not seen[-1].is_contiguous()
    wide = MixtureNet.from_isometric(2, num_templates=1, depth=1, block_kwargs={"expansion": 2}, channels_last=False,
                                     **SMALL)
    assert wide.blocks[0].conv_pw.out_channels == 2 * SMALL["channels"]  # block_kwargs reach the templates
    wide.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    wide(torch.rand(2, 1, 8, 8))
    assert seen[-1].is_contiguous()
    with pytest.raises(ConfigError, match=r"^unknown block_input 'sum'; choose one of: none, add, concat$"):
        MixtureNet.from_isometric(2, num_templates=1, depth=1, block_input="sum", **SMALL)   # MixtureNet's words
    with pytest.raises(ShapeError, match=r"^coeff has shape \(2, 1\); expected \(L, K\) = \(1, 1\)$"):
        net(torch.rand(1, 1, 4, 4), coeff=torch.ones(2, 1))


def test_an_example_batch_probes_the_blocks_at_construction():
    with pytest.raises(ShapeError, match=r"^block of MixtureNet \(Linear\) maps an input of shape \(2, 4\) to \(2, 8\)"):
        MixtureNet(lambda: nn.Linear(4, 8), num_templates=1, depth=1, tasks=["a"], example=torch.zeros(2, 4))

    class Masked(nn.Linear):
        def forward(self, x, mask):
            return super().forward(x) * mask

    net = MixtureNet(lambda: Masked(4, 4), num_templates=2, depth=1, tasks=["a"],
                     example=(torch.zeros(2, 4), {"mask": torch.ones(4)}))
    assert net.probed and net.blocks[0].weight.grad_fn is None         # probed, then the generated weights released
    assert net(torch.ones(2, 4), mask=torch.zeros(4)).abs().sum() == 0


def test_a_task_added_to_a_moved_model_is_on_its_device_and_dtype():
    """add_task puts the new logits, head, patches and statistics where the bank is ("meta": a device without an
    accelerator)."""
    net = MixtureNet(_bn_block, num_templates=2, depth=2, tasks={"a": 3}, embed_dim=4, bn="patch").to("meta")
    net.add_task("b", 3)
    net.add_task("c", 3, from_task="a", mixture_logits=torch.zeros(2, 2, dtype=torch.float64))
    for t in ("b", "c"):
        tensors = [net.mixture[t], net.heads[t].weight, net.patches[t], getattr(net.stats, t)]
        assert {x.device.type for x in tensors} == {"meta"} and {x.dtype for x in tensors} == {torch.float32}


def test_a_task_added_to_a_double_model_is_double_and_runs():
    """Regression: a task added after ``.double()`` got a float32 head and float32 BN statistics (its forward
    failed with "expected scalar type Double")."""
    net = MixtureNet(_bn_block, num_templates=2, depth=2, tasks={"a": 3}, embed_dim=4, bn="patch").double()
    net.add_task("b", 3)
    tensors = [net.mixture["b"], net.heads["b"].weight, net.patches["b"], getattr(net.stats, "b")]
    assert {x.dtype for x in tensors} == {torch.float64}
    x = torch.randn(5, 4, dtype=torch.float64)
    net.train()
    assert net(x, task="b").dtype == torch.float64
    net.eval()
    torch.testing.assert_close(net(x, task="b"), export(net, "b").eval()(x))
