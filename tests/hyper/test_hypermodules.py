"""Hypermodules: identity contexts reproduce given weights; the soft merge (Eq. 8) equals a reference loop."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tessera.errors import ShapeError
from tessera.hyper import reparameterize
from tessera.hyper.hypermodules import HyperGenerator, HypermoduleBank, context_magnitude, he_std, softmax_rows
from tessera.hyper.targets import find_targets


@settings(max_examples=15, deadline=None)
@given(out=st.integers(2, 12), inp=st.integers(2, 12), m=st.integers(1, 5), n=st.integers(1, 5),
       c=st.integers(1, 3), kind=st.sampled_from(["linear", "conv1d", "conv2d", "lstm"]))
def test_one_hypermodule_per_location_with_identity_contexts_reproduces_weights(out, inp, m, n, c, kind):
    m, n = min(m, inp), min(n, out)
    if kind == "lstm":  # weight_hh maps hidden -> hidden: both block sides must fit `out` and `inp`
        m, n = min(m, inp, out), min(n, inp, out)
    torch.manual_seed(0)
    layer = {"linear": lambda: nn.Linear(inp, out), "conv1d": lambda: nn.Conv1d(inp, out, 3),
             "conv2d": lambda: nn.Conv2d(inp, out, 2), "lstm": lambda: nn.LSTM(inp, out)}[kind]()
    before = {k: v.detach().clone() for k, v in layer.named_parameters()}
    muir = reparameterize(layer, block=(m, n), context=c, lam=1, target_modules="*", init="copy")
    gen = muir[0].generator
    after = dict(zip([s.name for s in gen.writer.slots], gen.materialize()))
    for name, w in after.items():
        assert torch.equal(w, before[name]), name


def _reference_merge(H, z, scores, cand):
    """B_l = sum_i softmax(s_l)_i * (H_cand(l,i) x_1 z_l) with explicit loops."""
    out = []
    for l in range(cand.shape[0]):
        w = torch.softmax(scores[l], 0)
        b = sum(w[i] * torch.einsum("cp,c->p", H[cand[l, i]], z[l]) for i in range(cand.shape[1]))
        out.append(b)
    return torch.stack(out)


def test_soft_merge_matches_reference_loop():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)) for _ in range(2)]
    muir = reparameterize(nets, block=(4, 4), context=3, lam=2, p=1.0)
    muir.begin_generation()
    g = muir[1].generator
    with torch.no_grad():
        g.scores.normal_()
        g.z.normal_()
    assert g.is_merging and (g.cand[:, 1:] != g.cand[:, :1]).any()
    H = muir.bank.H.detach()
    torch.testing.assert_close(g.blocks(), _reference_merge(H, g.z.detach(), g.scores.detach(), g.cand))
    muir.end_generation()
    ref = torch.einsum("lcp,lc->lp", H[g.psi0], g.z.detach())           # Eq. 5
    torch.testing.assert_close(g.blocks(), ref)


def test_eq7_initialisation_keeps_he_variance():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 256), nn.Linear(256, 256), nn.Linear(256, 4))
    muir = reparameterize(net, block=(16, 16), context=4)
    w = muir[0].generator.materialize()[0]
    assert abs(w.std().item() / math.sqrt(2 / 256) - 1) < 0.05               # He normal of Linear(256 -> 256)
    z = muir[0].generator.z
    assert torch.allclose(z, torch.full_like(z, context_magnitude(256, (16, 16), 4)))  # constant z (§3.2)
    assert math.isclose(context_magnitude(256, (16, 16), 4, "paper"), context_magnitude(256, (16, 16), 4) / 2)


def test_context_zero_folds_the_eq7_magnitude_into_each_initial_hypermodule():
    """Table 7 (c = 0): H (K, 1, m*n) drawn N(0, 2/m), hypermodule l scaled by location l's Eq. 7 magnitude
    sqrt(2/fan_in) / sqrt(2/m); z is a saved buffer of ones and every block IS its hypermodule."""
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 12), nn.Linear(12, 8), nn.Linear(8, 2)) for _ in range(2)]
    torch.manual_seed(1)
    muir = reparameterize(nets, block=(4, 4), context=0, verbose=False)
    torch.manual_seed(1)
    raw = torch.empty(24, 1, 16).normal_(0.0, math.sqrt(2 / 4))          # the bank's draw, by hand
    # per model: 6 locations of Linear(8, 12) (fan_in 8), then 6 of Linear(12, 8) (fan_in 12)
    scale = torch.tensor(([math.sqrt(4 / 8)] * 6 + [math.sqrt(4 / 12)] * 6) * 2)
    assert muir.bank.H.shape == (24, 1, 16)
    torch.testing.assert_close(muir.bank.H.detach(), raw * scale[:, None, None])
    for g in muir.generators:
        assert "z" in g.state_dict() and "z" not in dict(g.named_parameters())     # a saved buffer, not trained
        assert torch.equal(g.z, torch.ones(12, 1))
        assert torch.equal(g.blocks(), muir.bank.H[g.psi0, 0])


def test_parallel_adapter_adds_its_diagonal_at_block_position_a_a():
    """B_l + diag(d_l) on a non-square block (m, n) = (2, 4) laid out row-major: d_l[a] lands on B_l[a, a]."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)) for _ in range(2)]
    g = reparameterize(nets, block=(2, 4), context=2, verbose=False, vectorize=False).generators[0]
    base = g.blocks().detach().view(-1, 2, 4)
    g.add_adapter()
    assert g.adapter.shape == (g.num_locations, 2) and torch.equal(g.blocks(), base.reshape(g.num_locations, -1))
    with torch.no_grad():
        g.adapter.normal_()
    expect = base.clone()
    for a in range(2):
        expect[:, a, a] += g.adapter.detach()[:, a]
    torch.testing.assert_close(g.blocks(), expect.reshape(g.num_locations, -1))


def test_softmax_rows_is_stable_and_over_the_last_dim():
    s = torch.tensor([[100.0, 0.0], [-100.0, -101.0]])               # exp(100) or exp(200) overflow float32
    expect = torch.tensor([[1.0, math.exp(-100)], [1 / (1 + math.exp(-1)), math.exp(-1) / (1 + math.exp(-1))]])
    torch.testing.assert_close(softmax_rows(s), expect)
    x = torch.arange(24.0).sin().view(2, 3, 4)                          # any leading dims: rows are the last dim
    torch.testing.assert_close(softmax_rows(x), torch.softmax(x, -1))


def test_he_std_and_eq7_magnitude_by_hand():
    assert he_std(8) == 0.5 and he_std(1) == math.sqrt(2.0)
    # a non-square block: sigma_H = He(m) uses the block's input side m = 2, not n = 8
    assert math.isclose(context_magnitude(18, (2, 8), 1), math.sqrt(2 / 18) / math.sqrt(2 / 2))   # = 1/3
    assert math.isclose(context_magnitude(18, (2, 8), 4), 1 / 6)
    assert math.isclose(context_magnitude(18, (2, 8), 4, "paper"), 1 / 12)


def test_bank_init_is_he_normal_of_the_block_inputs_on_the_given_device_and_dtype():
    torch.manual_seed(0)
    bank = HypermoduleBank(num_modules=500, context=2, block=(8, 2), dtype=torch.float64)
    assert bank.H.shape == (500, 2, 16) and bank.H.dtype == torch.float64
    assert abs(bank.H.mean().item()) < 0.02 and abs(bank.H.std().item() - 0.5) < 0.02    # N(0, 2/m), m = 8
    assert repr(bank) == "HypermoduleBank(K=500, c=2, block=8x2)"
    assert HypermoduleBank(2, 0, (3, 2), device="meta").H.device.type == "meta"          # c = 0: one fibre
    assert HypermoduleBank(2, 0, (3, 2), device="meta").H.shape == (2, 1, 6)


def _two_nets(dtype=torch.float32):
    torch.manual_seed(0)
    return [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)).to(dtype) for _ in range(2)]


def test_a_float64_model_gets_float64_contexts_scores_and_blocks():
    for c in (0, 2):                                   # c = 0: z is a buffer of ones, else a Parameter
        muir = reparameterize(_two_nets(torch.float64), block=(4, 4), context=c, verbose=False)
        for g in muir.generators:
            assert g.z.dtype == g.scores.dtype == muir.bank.H.dtype == torch.float64, c
            assert g.blocks().dtype == torch.float64


def test_a_fresh_generator_uses_eq5_and_saves_only_its_documented_state():
    g = reparameterize(_two_nets(), block=(4, 4), context=2, verbose=False).generators[0]
    assert not g.is_merging                                            # Eq. 8 only between begin/end_generation
    assert set(g.state_dict()) == {"bank.H", "z", "scores", "psi0", "cand", "merging", "layout", "spec"}
    g.add_adapter()
    assert set(g.state_dict()) == {"bank.H", "z", "scores", "adapter", "psi0", "cand", "merging", "layout", "spec"}


def test_direct_set_alignment_is_seen_by_the_next_blocks():
    """The cached bank rows follow every alignment change, whoever makes it (a generator's set_alignment, the
    models' fix_alignment)."""
    muir = reparameterize(_two_nets(), block=(4, 4), context=2, verbose=False)
    g = muir.generators[0]
    H, z = muir.bank.H.detach(), g.z.detach()

    def eq5(psi):                                                      # B_l = H_psi(l) x_1 z_l
        return torch.stack([torch.einsum("cp,c->p", H[psi[l]], z[l]) for l in range(len(psi))])
    torch.testing.assert_close(g.blocks(), eq5(g.psi0.clone()))
    for psi in ([4, 4, 5, 5], [7, 6, 5, 4], [0, 0, 0, 0]):
        muir.fix_alignment(muir.alignment())                           # a models-level change in between
        g.set_alignment(torch.tensor(psi))
        torch.testing.assert_close(g.blocks(), eq5(psi))


def test_a_generator_built_by_hand_without_aliases(monkeypatch):
    """HyperGenerator as a building block (no aliases), also as the first generator of a process (the class's
    alignment counter at 0); a layout of another length is refused."""
    monkeypatch.setattr(HyperGenerator, "alignment_version", 0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    (t,), _ = find_targets(net, block=(4, 4))
    bank = HypermoduleBank(4, 2, (4, 4))
    with pytest.raises(ShapeError, match=r"^slots cover 4 locations but the layout has 5$"):
        HyperGenerator(bank, [(t.module, t.attr, t.plan)], torch.zeros(5, 6, dtype=torch.long), 0, 1, torch.ones(5, 2))
    g = HyperGenerator(bank, [(t.module, t.attr, t.plan)], t.plan.table.new_zeros(4, 6), 0, 1, torch.ones(4, 2))
    w = net[1].weight.detach().clone()
    g.load_blocks(g.decompose_weights([w], [t.plan]))
    assert torch.equal(g.materialize()[0], w)


def test_the_generators_state_is_made_on_the_models_device():
    """Models on another device than the CPU (here "meta", which needs no accelerator): the bank, every
    generator's saved state and its writer's gather indices are created there (c = 0 and c > 0)."""
    for c in (0, 2):
        nets = [nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)).to("meta") for _ in range(2)]
        muir = reparameterize(nets, block=(4, 4), context=c, verbose=False, vectorize=False)
        for g in muir.generators:
            assert {k: v.device.type for k, v in g.state_dict().items()} == dict.fromkeys(
                ["bank.H", "z", "scores", "psi0", "cand", "merging", "layout", "spec"], "meta"), c
            assert all(s.index.device.type == "meta" for s in g.writer.slots)
