"""A MixtureNet and its export against an independent reference: a plain IsometricNet (tessera.nn) holding
the same weights. One-hot mixture weights: the MixtureNet, the export and the IsometricNet compute the same
logits, and the export's tensors ARE the original weights, bit for bit. Soft mixture weights: the same,
with each block of the IsometricNet set by hand to sum_k c_lk * template_k."""
import pytest
import torch

from tessera.mixture import MixtureNet, export
from tessera.nn import IsometricNet

CH, DEPTH, K, CLASSES = 8, 3, 3, 5
KW = dict(channels=CH, patch=2, head_channels=(16, 12), dropout=0.0)


def _randomize(net: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, non-zero biases (init leaves them at 0 / 1)."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            for p in m.parameters(recurse=False):
                if p.ndim == 1:
                    p.copy_(torch.rand(p.shape, generator=g) - 0.5 + (1.0 if "BatchNorm" in type(m).__name__ else 0))
        net.head.weight.normal_(0, 0.5, generator=g)


def _iso(seed: int) -> IsometricNet:
    torch.manual_seed(seed)
    net = IsometricNet(CLASSES, depth=DEPTH, **KW).double()
    _randomize(net)
    return net.eval()


def _mixture_like(iso: IsometricNet, templates: list[torch.nn.Module], logits: torch.Tensor) -> MixtureNet:
    """A MixtureNet whose adapters, head, per-layer BN (affine and statistics) are ``iso``'s and whose
    template k is ``templates[k]``; task "main" uses mixture ``logits`` (L, K)."""
    net = MixtureNet.from_isometric({"main": CLASSES}, num_templates=K, depth=DEPTH, **KW).double()
    net.mixture["main"].data.copy_(logits)
    with torch.no_grad():
        for part in ("input_adapter", "output_adapter"):
            ours, theirs = getattr(net, part), getattr(iso, part)
            for name, t in list(theirs.named_parameters()) + [(n, b) for n, b in theirs.named_buffers()
                                                               if "running" in n]:
                mod, _, attr = name.rpartition(".")
                getattr(ours.get_submodule(mod), attr).copy_(t)       # adapter statistics are views into stats
        net.heads["main"].load_state_dict(iso.head.state_dict())
        for k, t in enumerate(templates):
            net.bank.weight[k] = torch.cat([getattr(t.get_submodule(s.module), s.attr).reshape(-1)
                                            for s in net.bank.layout])
        for l, blk in enumerate(iso.blocks):                          # per-layer BN affine and statistics
            for s in net.bank.norm_layout + net.bank.stats_layout:
                getattr(net.blocks[l].get_submodule(s.module), s.attr).copy_(getattr(blk.get_submodule(s.module),
                                                                                     s.attr))
    return net.eval()


def test_one_hot_mixture_and_export_equal_the_isometric_net_and_keep_its_weights():
    iso = _iso(0)
    sig = torch.tensor([2, 0, 1])                                     # layer l uses template sig[l]
    templates = [None] * K
    for l, k in enumerate(sig.tolist()):
        templates[k] = iso.blocks[l]
    net = _mixture_like(iso, templates, torch.where(torch.nn.functional.one_hot(sig, K) > 0, 0.0, -1e4))
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = iso(x)
        torch.testing.assert_close(net(x), ref, rtol=0, atol=1e-12)
        plain = export(net).eval()
        torch.testing.assert_close(plain(x), ref, rtol=0, atol=1e-12)
    assert plain.signature == sig.tolist()
    ours, theirs = plain.state_dict(), iso.state_dict()
    assert sorted(ours) == sorted(theirs)
    for k, v in theirs.items():
        assert torch.equal(ours[k], v), k                             # the original weights, bit for bit


def test_soft_mixture_and_export_equal_an_isometric_net_with_hand_mixed_blocks():
    iso, bank_src = _iso(0), _iso(1)                                  # templates: the blocks of another net
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(DEPTH, K, generator=g, dtype=torch.float64)
    net = _mixture_like(iso, list(bank_src.blocks), logits)
    c = logits.softmax(-1)                                            # (L, K) by hand
    with torch.no_grad():
        for l, blk in enumerate(iso.blocks):                          # block l = sum_k c[l, k] * template k
            for s in net.bank.layout:
                mixed = sum(c[l, k] * getattr(bank_src.blocks[k].get_submodule(s.module), s.attr) for k in range(K))
                getattr(blk.get_submodule(s.module), s.attr).copy_(mixed)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        ref = iso(x)
        torch.testing.assert_close(net(x), ref, rtol=1e-10, atol=1e-10)
        plain = export(net).eval()
        torch.testing.assert_close(plain(x), ref, rtol=1e-10, atol=1e-10)
    assert plain.signature == [None] * DEPTH
    for k, v in iso.state_dict().items():
        torch.testing.assert_close(plain.state_dict()[k], v, rtol=1e-12, atol=1e-12, msg=k)
    assert not torch.allclose(ref, bank_src(x))                       # the mixture is not just one network


@pytest.mark.parametrize("task", ["a", "b"])
def test_export_of_each_task_uses_that_tasks_statistics_and_head(task):
    """Two tasks with different BN statistics and heads: export(net, task) equals the task's own forward
    and not the other task's (the export must pick the task, not the active one)."""
    net = MixtureNet.from_isometric({"a": 3, "b": 3}, num_templates=2, depth=2, **KW)
    net.train()
    x = torch.rand(6, 1, 8, 8)
    net(x, task="a"), net(x * 3 + 1, task="b")                        # different statistics per task
    net.set_task("a")
    with torch.no_grad():
        net.heads["b"].weight.normal_()
        plain = export(net, task).eval()
        net.eval()
        torch.testing.assert_close(plain(x), net(x, task=task), rtol=0, atol=1e-6)
        other = "b" if task == "a" else "a"
        assert not torch.allclose(plain(x), net(x, task=other), atol=1e-4)


def test_forward_embedding_and_coeff_against_the_export_and_the_bank():
    """forward_embedding(task=) is the export's embedding of that task; ``coeff`` one-hot on template k
    makes every layer template k (TemplateBank.template(k), an independent materialization; forward,
    forward_embedding and forward_features)."""
    torch.manual_seed(0)
    net = MixtureNet.from_isometric({"a": 3, "b": 3}, num_templates=2, depth=2, **KW).double().eval()
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        for t in ("b", "a"):
            torch.testing.assert_close(net.forward_embedding(x, task=t), export(net, t).eval().forward_embedding(x))
        coeff = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
        emb = net.forward_embedding(x, coeff=coeff)
        h = net.input_adapter(x)
        for l in range(2):
            blk = net.bank.template(1).double().eval()
            for s in net.bank.norm_layout + net.bank.stats_layout:       # layer l's own BN
                getattr(blk.get_submodule(s.module), s.attr).data = getattr(net.blocks[l].get_submodule(s.module),
                                                                            s.attr).detach().clone()
            h = blk(h)
        torch.testing.assert_close(emb, net.output_adapter(h))
        torch.testing.assert_close(net.forward_features(x, coeff=coeff), h)
        torch.testing.assert_close(net(x, coeff=coeff), net.heads[net.task](emb))
    w = net.mixture_weights()
    assert sorted(w) == ["a", "b"] and all(torch.equal(w[t], net.coefficients(t).detach()) for t in w)
    assert list(net.mixture_weights(["b"])) == ["b"]
    assert net.signature("b")[0] == net.mixture["b"].argmax(-1).tolist()


def test_template_bank_templates():
    from tessera.errors import ConfigError
    from tessera.mixture import TemplateBank
    from tessera.nn import BLOCKS
    block = BLOCKS.get("basic_residual")(4)
    bank = TemplateBank(block, 3)                        # a module: copies 1.. are re-drawn, not equal
    assert not torch.equal(bank.weight[0], bank.weight[1]) and not torch.equal(bank.weight[1], bank.weight[2])
    torch.testing.assert_close(bank.weight[0], torch.cat([getattr(block.get_submodule(s.module), s.attr).reshape(-1)
                                                          for s in bank.layout]))
    bank.double()
    t2 = bank.template(2)
    assert t2.conv1.weight.dtype == torch.float64
    assert torch.equal(torch.cat([getattr(t2.get_submodule(s.module), s.attr).reshape(-1) for s in bank.layout]),
                       bank.weight[2].detach())
    assert not torch.equal(bank.prototype.conv1.weight.double().reshape(-1), t2.conv1.weight.reshape(-1))
    with pytest.raises(ConfigError, match="^template index 3 out of range; the bank has 3 templates$"):
        bank.template(3)


class _Shift(torch.nn.Module):
    """A block with a required keyword argument: ``lin(x) + shift`` (what an attention mask is to a transformer)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, shift):
        return self.lin(x) + shift


def test_block_keyword_arguments_reach_every_block_in_each_forward():
    """forward / forward_embedding / forward_features pass their extra keyword arguments to every block
    (and to the first-call probe); reference: the two templates' Linear layers applied by hand."""
    torch.manual_seed(0)
    net = MixtureNet(_Shift, num_templates=1, depth=2, tasks=["a"])
    lin = net.bank.template(0).lin                                     # K = 1: every layer is template 0
    x = torch.randn(3, 4)
    with torch.no_grad():
        ref = lin(lin(x) + 2.0) + 2.0
        torch.testing.assert_close(net.forward_features(x, shift=2.0), ref)
        torch.testing.assert_close(net.forward_embedding(x, shift=2.0), ref)
        torch.testing.assert_close(net(x, shift=2.0), ref)


def test_signature_of_the_active_and_of_a_named_task_by_hand():
    net = MixtureNet(_Shift, num_templates=3, depth=2, tasks=["a", "b"])
    with torch.no_grad():
        net.mixture["a"].copy_(torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]))
        net.mixture["b"].copy_(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))
    e = torch.e
    conf_a = [e ** 3 / (e ** 3 + 2), e / (e + 2)]
    assert net.task == "a"
    idx, conf = net.signature()                                        # the active task
    assert idx == [2, 0] and conf == pytest.approx(conf_a)
    idx, conf = net.signature("b")
    assert idx == [1, 0] and conf == pytest.approx([e ** 2 / (e ** 2 + 2), 1 / 3])


def test_eval_once_reports_the_first_line_of_the_error_or_its_type():
    from tessera.errors import ShapeError
    from tessera.mixture.templates import eval_once

    class Fails(torch.nn.Module):
        def __init__(self, exc):
            super().__init__()
            self.exc = exc

        def forward(self, x):
            raise self.exc

    fail = lambda msg: f"it failed: {msg}"                                # noqa: E731
    with pytest.raises(ShapeError, match=r"^it failed: first line$"):
        eval_once(Fails(RuntimeError("  first line\nsecond line\n")), (torch.zeros(1),), None, fail)
    with pytest.raises(ShapeError, match=r"^it failed: ValueError$"):
        eval_once(Fails(ValueError()), (torch.zeros(1),), None, fail)


def test_restore_buffer_makes_bound_statistics_buffers_again_in_bn_order():
    from tessera.core import bind
    from tessera.mixture.templates import restore_buffer
    bn = torch.nn.BatchNorm1d(3)
    mean, var = torch.full((3,), 0.5), torch.full((3,), 2.0)
    for attr in ("running_mean", "running_var"):
        del bn._buffers[attr]
        bind(bn, attr, torch.zeros(3))                                 # as a MixtureNet binds them: plain views
    restore_buffer(bn, "running_var", var)                             # restored in the "wrong" order
    restore_buffer(bn, "running_mean", mean)
    assert list(bn._buffers) == list(torch.nn.BatchNorm1d(3)._buffers)   # running_mean, running_var, num_batches...
    assert bn.running_mean is mean and bn.running_var is var and "running_mean" not in bn.__dict__
    del bn._buffers["running_var"]                                     # not bound: just gone
    restore_buffer(bn, "running_var", var)
    assert list(bn.state_dict()) == list(torch.nn.BatchNorm1d(3).state_dict())


def test_template_of_a_bank_on_another_device_is_on_that_device():
    from tessera.mixture import TemplateBank
    bank = TemplateBank(lambda: torch.nn.Linear(3, 3), 2).to("meta")   # "meta": a device without an accelerator
    blk = bank.template(1)
    assert {p.device.type for p in blk.parameters()} == {"meta"}


def test_probe_block_errors_name_the_block_and_restore_training_flags():
    """probe_block's one-line errors name ``what`` and the block's class; the block's (and its submodules')
    training flags are restored after the eval-mode probe."""
    from tessera.errors import ShapeError
    from tessera.mixture.templates import probe_block
    x = torch.zeros(2, 4)
    with pytest.raises(ShapeError, match=r"^block \(Linear\) fails on an input of shape \(2, 4\): mat1 and mat2 shapes "
                                         r"cannot be multiplied \(2x4 and 3x3\); make the block accept the body's "
                                         r"activations \(width, embed_dim\) and the extra arguments$"):
        probe_block(torch.nn.Linear(3, 3), (x,))
    with pytest.raises(ShapeError, match=r"^layer 0 \(Linear\) maps an input of shape \(2, 4\) to \(2, 8\); blocks of "
                                         r"a mixture body must keep the shape"):
        probe_block(torch.nn.Linear(4, 8), (x,), None, "layer 0")
    with pytest.raises(ShapeError, match=r"^block of Net has uninitialized lazy parameters \(root: LazyLinear\); "):
        probe_block(torch.nn.LazyLinear(4), (x,), None, "block of Net")

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(ShapeError, match=r"^block \(Pair\) returns a tuple, not a tensor; "):
        probe_block(Pair(), (x,))
    seq = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).train()
    seq[0].eval()                                                      # mixed flags come back as they were
    probe_block(seq, (x,))
    assert [m.training for m in seq.modules()] == [True, False, True]


def test_template_bank_layouts_by_hand():
    """Layouts (names, shapes, offsets), initial norm affine and statistics, init applied to every template."""
    from tessera.mixture import TemplateBank
    from tessera.mixture.templates import ParamSpec
    block = lambda: torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))      # noqa: E731
    seen = []

    def init(t):
        seen.append(t)
        torch.nn.init.constant_(t[0].weight, len(seen))

    bank = TemplateBank(block, 2, init=init)
    assert [(s.name, s.shape, s.offset, s.numel) for s in bank.layout] == [("0.weight", (3, 2), 0, 6),
                                                                           ("0.bias", (3,), 6, 3)]
    assert [(s.name, s.offset) for s in bank.norm_layout] == [("1.weight", 0), ("1.bias", 3)]
    assert [(s.module, s.attr, s.offset) for s in bank.stats_layout] == [("1", "running_mean", 0),
                                                                         ("1", "running_var", 3)]
    assert len(seen) == 2 and bank.numel == 9 and bank.weight.shape == (2, 9)
    assert torch.equal(bank.weight[:, :6], torch.tensor([[1.0] * 6, [2.0] * 6]))
    assert torch.equal(bank.norm_init, torch.tensor([1.0, 1, 1, 0, 0, 0]))
    assert torch.equal(bank.stats_init, torch.tensor([0.0, 0, 0, 1, 1, 1]))
    assert bank.extra_repr() == "K=2, P=9, tensors=2, mixed_norm=False"
    mixed = TemplateBank(block, 1, mixed_norm=True)
    assert [(s.name, s.offset) for s in mixed.layout] == [("0.weight", 0), ("0.bias", 6), ("1.weight", 9),
                                                          ("1.bias", 12)]
    assert mixed.norm_layout == () and mixed.norm_init.shape == (0,)
    assert ParamSpec("", "weight", (), 0).name == "weight" and ParamSpec("", "weight", (), 0).numel == 1


def test_template_bank_refuses_bad_blocks_in_one_line():
    from tessera.errors import ConfigError, ShapeError
    from tessera.mixture import TemplateBank

    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(2, 2)
            self.b = self.a

    widths = iter([True, False])
    one, two = (lambda: torch.nn.Sequential(torch.nn.Linear(2, 2))), (lambda: torch.nn.Sequential(torch.nn.Linear(2, 2),
                                                                                                  torch.nn.Linear(2, 2)))
    shorter, longer = iter([two, one]), iter([one, two])
    cases = [
        (lambda: TemplateBank(5, 2), ConfigError, r"^block must be an nn\.Module or a factory returning one, got int$"),
        (lambda: TemplateBank(lambda: 3, 2), ConfigError,
         r"^block factory returned int for template 0; return an nn\.Module$"),
        (lambda: TemplateBank(torch.nn.Linear(2, 2), True), ConfigError,
         r"^num_templates must be an int >= 1, got True; use K=1 or more templates$"),
        (lambda: TemplateBank(torch.nn.Linear(2, 2), 0), ConfigError, r"^num_templates must be an int >= 1, got 0;"),
        (lambda: TemplateBank(Tied(), 1), ShapeError, r"^block parameters a\.weight and b\.weight are one tensor "
                                                      r"\(tied\); template mixing needs untied parameters, untie them"),
        (lambda: TemplateBank(torch.nn.ReLU(), 1), ShapeError, r"^ReLU has no parameters to mix; pass a block with "
                                                               r"weights$"),
        (lambda: TemplateBank(torch.nn.LazyLinear(2), 1), ShapeError,
         r"^block has uninitialized lazy parameters \(root: LazyLinear\); run it once on an example input or give "
         r"the layer explicit sizes before building templates$"),
        (lambda: TemplateBank(lambda: torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LazyLinear(2)), 1),
         ShapeError, r"^block has uninitialized lazy parameters \(1: LazyLinear\);"),
        (lambda: TemplateBank(lambda: torch.nn.Linear(2, 2, bias=next(widths)), 2), ShapeError,
         r"^template 1 has parameter \[\] where template 0 has \[\('bias', \(2,\)\)\]; a template bank needs K blocks "
         r"of one architecture \(same names and shapes\)$"),
        (lambda: TemplateBank(lambda: next(shorter)(), 2), ShapeError,     # the first missing one only
         r"^template 1 has parameter \[\] where template 0 has \[\('1\.weight', \(2, 2\)\)\]; "),
        (lambda: TemplateBank(lambda: next(longer)(), 2), ShapeError,
         r"^template 1 has parameter \[\('1\.weight', \(2, 2\)\)\] where template 0 has \[\]; "),
    ]
    for fn, err, msg in cases:
        with pytest.raises(err, match=msg):
            fn()
    assert TemplateBank(torch.nn.Linear(2, 2), 1).num_templates == 1


def test_adapter_statistics_are_per_task_and_start_at_the_adapters_own():
    """BN statistics of the adapters live in stats[task] after the blocks' (``adapter_stats`` names them); a task
    starts at the adapter's statistics at construction; a forward in train mode moves the active task's only, by
    BN's rule (momentum 0.1, unbiased variance) computed here by hand."""
    inp = torch.nn.BatchNorm1d(4)
    with torch.no_grad():
        inp.running_mean.fill_(5.0)
    out = torch.nn.Sequential(torch.nn.Identity(), torch.nn.BatchNorm1d(4, track_running_stats=False),
                              torch.nn.BatchNorm1d(4))
    net = MixtureNet(lambda: torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)), num_templates=2,
                     depth=2, tasks=["a", "b"], input_adapter=inp, output_adapter=out)
    assert net.adapter_stats == [("input_adapter", "running_mean", 16, 4), ("input_adapter", "running_var", 20, 4),
                                 ("output_adapter.2", "running_mean", 24, 4), ("output_adapter.2", "running_var", 28, 4)]
    start = torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4 + [5.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4)
    assert torch.equal(getattr(net.stats, "a"), start) and torch.equal(getattr(net.stats, "b"), start)
    x = torch.randn(8, 4)
    net.train()
    net(x, task="b")
    b = getattr(net.stats, "b")
    torch.testing.assert_close(b[16:20], 0.9 * 5.0 + 0.1 * x.mean(0))
    torch.testing.assert_close(b[20:24], 0.9 + 0.1 * x.var(0, unbiased=True))
    assert torch.equal(getattr(net.stats, "a"), start) and not torch.equal(b[:8], start[:8])
    assert net.input_adapter.running_mean.data_ptr() == b[16:].data_ptr()          # bound as views


def test_adapter_statistics_names_and_one_module_as_both_adapters():
    """``adapter_stats`` names a statistic by its module path (whatever the name ends with); one BN module used as
    both adapters has its statistics taken once."""
    from collections import OrderedDict
    out = torch.nn.Sequential(OrderedDict(normX=torch.nn.BatchNorm1d(4)))
    net = MixtureNet(lambda: torch.nn.Linear(4, 4), num_templates=1, depth=1, tasks=["a"], output_adapter=out)
    assert [s[0] for s in net.adapter_stats] == ["output_adapter.normX"] * 2
    bn = torch.nn.BatchNorm1d(4)
    both = MixtureNet(lambda: torch.nn.Linear(4, 4), num_templates=1, depth=1, tasks=["a"], input_adapter=bn,
                      output_adapter=bn)
    assert [s[:2] for s in both.adapter_stats] == [("input_adapter", "running_mean"), ("input_adapter", "running_var")]
    assert getattr(both.stats, "a").shape == (8,) and both(torch.randn(3, 4)).shape == (3, 4)
