"""Hypermodules: identity contexts reproduce given weights; the soft merge (Eq. 8) equals a reference loop."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tessera.hyper import reparameterize
from tessera.hyper.hypermodules import context_magnitude


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
