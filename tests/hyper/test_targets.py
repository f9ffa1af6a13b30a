"""Weight views, PEFT-like targeting, tied weights, the report, and one-line errors for bad input."""
import copy
import re

import pytest
import torch
from torch import nn

from tessera.errors import ConfigError, ShapeError
from tessera.hyper import export, find_targets, register_view, reparameterize
from tessera.hyper.views import WeightView, unregister_view
from tessera.hyper.decompose import decompose
from tessera.hyper.views import plan_view


def _err(exc, fn, match):
    with pytest.raises(exc, match=match) as e:
        fn()
    assert "\n" not in str(e.value)
    return str(e.value)


def _names(model, **kw):
    return [t.name for t in find_targets(model, block=kw.pop("block", (4, 4)), **kw)[0]]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.enc = nn.ModuleList([nn.Linear(8, 8) for _ in range(3)])
        self.attn = nn.MultiheadAttention(8, 2)
        self.small = nn.Linear(8, 2)
        self.head = nn.Linear(8, 20)


def test_patterns_names_globs_regex_and_exclusions():
    net = Net()
    assert _names(net, target_modules="1") == ["enc.1.weight"]                       # dotted-suffix name
    assert _names(net, target_modules="enc.*", exclude_modules="enc.2") == ["enc.0.weight", "enc.1.weight"]
    assert _names(net, target_modules=re.compile(r"enc\.[02]")) == ["enc.0.weight", "enc.2.weight"]
    assert _names(net, target_modules="re:enc\\.(1|2)") == ["enc.1.weight", "enc.2.weight"]
    assert _names(net, target_modules=["emb", "attn"]) == ["emb.weight", "attn.in_proj_weight", "attn.out_proj.weight"]
    _, rep = find_targets(net, block=(4, 4), target_modules="*", exclude_modules=["attn.out_proj", "nope"])
    status = {r.name: (r.status, r.reason) for r in rep.rows}
    assert status["attn.out_proj.weight"] == ("excluded", "exclude_modules 'attn.out_proj'")
    assert status["small.weight"][0] == "skipped" and "too small" in status["small.weight"][1]
    assert rep.unmatched == ["model 0: exclude_modules 'nope' matches no module"]


def test_default_targets_and_report_text():
    net = nn.Sequential(nn.Embedding(20, 8), nn.Linear(8, 8), nn.MultiheadAttention(8, 2), nn.Linear(8, 20))
    targets, rep = find_targets(net, block=(4, 4))
    assert [t.name for t in targets] == ["1.weight", "2.in_proj_weight", "2.out_proj.weight"]   # embeddings: named only
    assert [t.plan.count for t in targets] == [4, 3 * 4, 4]                          # q, k, v: 3 gates of 2x2 blocks
    assert [(r.name, r.status) for r in rep.rows if r.status == "adapter"] == [("3.weight", "adapter")]
    text = str(rep)
    assert "2.in_proj_weight" in text and "first" not in text and "last layer (3)" in text
    assert rep.summary().startswith("MUiR model 0: 3 weight(s) targeted = 20 locations of 4x4; 1 kept as adapters")


def test_patterns_matching_nothing_or_only_skipped_modules_are_named(capsys):
    nets = [nn.Sequential(nn.Linear(8, 8), nn.Conv2d(8, 8, 3, groups=8), nn.Linear(8, 2)) for _ in range(2)]
    muir = reparameterize(nets, block=(4, 4), context=1, target_modules=["0", "1", "bn", "2"])
    printed = capsys.readouterr().out
    assert muir.targets == [["0.weight"], ["0.weight"]]
    assert "model 0: target_modules '1' matches only skipped weights (1: Conv2d)" in muir.report.unmatched
    assert "model 1: target_modules 'bn' matches no module" in muir.report.unmatched
    assert "model 0: target_modules '2' matches only skipped weights (2: Linear)" in muir.report.unmatched
    assert printed == muir.report.summary() + "\n" and "depthwise" in printed and printed.count("MUiR model") == 2
    _err(ShapeError, lambda: reparameterize(copy.deepcopy(nets[0]), block=(4, 4), target_modules=["0", "1"],
                                            strict=True, verbose=False), "1.weight .*depthwise.*strict=False")


def test_transposed_views_cut_the_logical_matrix():
    # ConvTranspose2d(in=6, out=4): stored (in, out, k, k); block (i, j) holds W[i*m + a, j*n + b] at kernel pos 0
    w = torch.randn(6, 4, 1, 1)
    plan = plan_view(WeightView("weight", transposed=True), w.shape, (3, 2), "t")
    blocks = decompose(w, plan.index, plan.count, (3, 2)).view(-1, 3, 2)
    for l, (_, _, i, j) in enumerate(plan.table.tolist()):
        torch.testing.assert_close(blocks[l], w[i * 3:(i + 1) * 3, j * 2:(j + 1) * 2, 0, 0])
    lin = nn.Linear(6, 4)                                    # the same map stored (out, in): the same blocks
    plan_l = plan_view(WeightView("weight"), lin.weight.shape, (3, 2), "l")
    assert torch.equal(decompose(w[:, :, 0, 0].T.contiguous(), plan_l.index, plan_l.count, (3, 2)), blocks.view(-1, 6))


def test_tied_weights_are_generated_once_and_stay_tied_after_export():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.Linear(8, 2))
    net[3].weight = net[1].weight                            # two middle layers share one weight
    original = copy.deepcopy(net)
    muir = reparameterize(net, block=(4, 4), context=2, verbose=False)
    assert muir.targets == [["1.weight"]] and muir.num_locations == 4
    assert muir.report.targeted()[0].reason == "tied: also 3.weight"
    x = torch.randn(3, 4)
    muir[0](x).sum().backward()
    with torch.no_grad():
        plain = export(muir)[0]
        assert plain[1].weight is plain[3].weight and torch.equal(plain(x), muir[0](x))
        original.load_state_dict(plain.state_dict())
        assert torch.equal(original(x), muir[0](x))
    # the generated weight seen inside the forward is one tensor in both places
    seen = []
    hook = net[3].register_forward_pre_hook(lambda m, a: seen.append(m.weight is net[1].weight))
    muir[0](x)
    hook.remove()
    assert seen == [True]


def test_tie_with_an_excluded_module_is_refused():
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    net[2].weight = net[1].weight
    _err(ConfigError, lambda: find_targets(net, block=(4, 4), exclude_modules="2"), "one tensor with 2.weight")


def test_register_view_for_a_user_layer_and_hf_conv1d_by_duck_typing():
    class Dense(nn.Module):                                  # stores its kernel (in, out)
        def __init__(self, i, o):
            super().__init__()
            self.kernel = nn.Parameter(torch.randn(i, o) * 0.3)

        def forward(self, x):
            return x @ self.kernel

    class Conv1D(nn.Module):                                 # Hugging Face's GPT-2 layer, same contract
        def __init__(self, nf, nx):
            super().__init__()
            self.nf, self.weight, self.bias = nf, nn.Parameter(torch.randn(nx, nf) * 0.3), nn.Parameter(torch.zeros(nf))

        def forward(self, x):
            return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(*x.shape[:-1], self.nf)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), Dense(8, 8), Conv1D(12, 8), nn.Linear(12, 2))
    _, rep = find_targets(net, block=(4, 4), target_modules=["1", "2"])
    assert [(r.name, r.status) for r in rep.rows] == [("1.kernel", "skipped"), ("2.weight", "targeted")]
    assert "register_view(Dense" in rep.rows[0].reason
    register_view(Dense, WeightView("kernel", transposed=True))
    try:
        ref = copy.deepcopy(net)
        muir = reparameterize(net, block=(4, 4), context=1, init="copy", verbose=False)
        assert muir.targets == [["1.kernel", "2.weight"]] and muir.num_locations == 4 + 6
        x = torch.randn(5, 3)
        torch.testing.assert_close(muir[0](x), ref(x), rtol=0, atol=1e-6)     # identity init: same map
    finally:
        unregister_view(Dense)
    fresh = nn.Sequential(nn.Linear(3, 8), Dense(8, 8), nn.Linear(8, 1))
    _err(ConfigError, lambda: _names(fresh, target_modules="1"), "kind not supported .Dense.")   # forgotten again


def test_separate_qkv_projections_and_weight_norm():
    mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=4)
    assert _names(nn.ModuleDict({"a": mha}), target_modules="a") == ["a.q_proj_weight", "a.k_proj_weight",
                                                                       "a.v_proj_weight", "a.out_proj.weight"]
    wn = nn.utils.parametrizations.weight_norm(nn.Linear(8, 8))
    net = nn.Sequential(nn.Linear(4, 8), wn, nn.Linear(8, 8), nn.Linear(8, 2))
    _, rep = find_targets(net, block=(4, 4))
    assert [(r.name, r.status) for r in rep.rows if r.status != "adapter"] == [("1.weight", "skipped"),
                                                                               ("2.weight", "targeted")]
    assert "parametrization" in rep.rows[1].reason and "remove_parametrizations" in rep.rows[1].reason
    msg = _err(ConfigError, lambda: find_targets(net, block=(4, 4), target_modules="1"), "leave no weight")
    assert "weight_norm" in msg and msg.endswith("use other layers in target_modules: ['0', '2', '3']")  # not '1'
    old = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    with pytest.warns(FutureWarning):
        nn.utils.weight_norm(old[1])
    msg = _err(ConfigError, lambda: find_targets(old, block=(4, 4)), r"skipped 1.weight: .*\(weight_g, weight_v\)")
    assert msg.endswith("(the first and last layer are adapters by default) or register_view() their kind")
    _err(ShapeError, lambda: find_targets(net, block=(4, 4), strict=True), "1.weight .*parametrization")


def test_bad_input_is_one_line():
    lin = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    lazy = nn.Sequential(nn.Linear(4, 8), nn.LazyLinear(8), nn.Linear(8, 2))
    _err(ConfigError, lambda: reparameterize(lazy, block=(4, 4)), r"model 0: 1 \(LazyLinear\) .*run one forward")
    _err(ConfigError, lambda: reparameterize([lin, "net"], block=(4, 4)), r"models\[1\] is a str, not an nn.Module")
    _err(ConfigError, lambda: reparameterize(lin, block=(4, 4), target_modules=1), "target_modules must be .* got int 1")
    _err(ConfigError, lambda: reparameterize(lin, block=(4, 4), exclude_modules=[3]), "exclude_modules .* got int 3")
    _err(ConfigError, lambda: reparameterize(lin, blok=(4, 4)), "unknown keyword 'blok'; did you mean 'block'")
    _err(ConfigError, lambda: reparameterize(lin, target_modules="re:(", block=(4, 4)), "not a valid regular expression")
    _err(ConfigError, lambda: reparameterize([lin, lin], block=(4, 4)), "models 0 and 1 share the parameter")
    _err(ConfigError, lambda: reparameterize(7, block=(4, 4)), "models must be an nn.Module")
    _err(ConfigError, lambda: reparameterize([], block=(4, 4)), "at least one model")
