"""c = 0 (blocks = hypermodules) and the other ways to share (Table 6): classical hard sharing equals tied
weights trained by hand, parallel adapters add a diagonal, MUiR starts from the hierarchical alignment."""
import copy
import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tessera.hyper.sharing as sharing
from tessera.errors import ConfigError, TesseraError
from tessera.hyper import MuirSearch, export, register_sharing, reparameterize, search_steps, share
from tessera.hyper.decompose import reassemble
from tessera.hyper.hypermodules import softmax_rows
from tessera.train import Task, Trainer, TrainConfig


def _nets(seed=0, widths=((8, 16, 16, 16, 2), (8, 16, 16, 2))):
    torch.manual_seed(seed)
    out = []
    for w in widths:
        layers = []
        for a, b in zip(w, w[1:]):
            layers += [nn.Linear(a, b), nn.Tanh()]
        out.append(nn.Sequential(*layers[:-1]))
    return out


def test_doctest():
    assert doctest.testmod(sharing).failed == 0


def test_c0_blocks_are_the_hypermodules_and_start_at_the_layers_he_scale():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 256), nn.Linear(256, 256), nn.Linear(256, 1))]
    muir = reparameterize(nets, block=(16, 16), context=0, lam=1)
    g = muir.generators[0]
    assert not any(n.endswith(".z") for n, _ in muir.named_parameters()) and tuple(g.z.shape) == (256, 1)
    assert torch.equal(g.blocks(), muir.bank.H[g.psi0, 0])                          # B_l = H_psi(l) exactly
    w = muir[0].generator.materialize()[0]
    assert w.std().item() == pytest.approx((2 / 256) ** 0.5, rel=0.03)             # He std of a 256-input layer
    st = muir.stats()
    assert st["params"] == st["params_compact"] == st["active"] * 256               # no contexts
    assert tuple(muir.bank.H.shape) == (muir.num_modules, 1, 256)                   # one block per module
    with pytest.raises(ConfigError, match="context must be >= 0"):
        reparameterize(_nets(), block=(4, 4), context=-1)


def test_c0_soft_merge_mixes_whole_blocks_by_the_scores():
    muir = reparameterize(_nets(), block=(4, 4), context=0, lam=1, p=1.0)
    muir.begin_generation()
    g = muir.generators[1]
    with torch.no_grad():
        g.scores.copy_(torch.randn_like(g.scores))
    w = softmax_rows(g.scores)                                                      # (L, 2)
    H = muir.bank.H[:, 0]                                                           # (K, m*n)
    ref = w[:, :1] * H[g.cand[:, 0]] + w[:, 1:] * H[g.cand[:, 1]]
    torch.testing.assert_close(g.blocks(), ref)


def _engine(model, tasks, steps, out_dir=None, optim=None):
    cfg = TrainConfig(steps=steps, batch_size=16, multitask="sum", progress="off", log_every=0,
                      checkpoint_every=0, optim=optim or {"name": "adam", "lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0},
                      schedule={"name": "constant"}, ema={"enabled": False})
    return Trainer(model, tasks, cfg, out_dir=out_dir,
                   param_groups=model.param_groups(lr=cfg.optim.lr) if hasattr(model, "param_groups") else None)


def _tasks(n=2):
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)
    return [Task(f"t{i}", train=(x, y), forward=lambda m, x, i=i: m[i](x), order="sequential") for i in range(n)]


def test_classical_sharing_equals_tied_weights_trained_by_hand():
    """Reference: two nets whose middle Linear weights ARE one tensor, Adam on the summed loss."""
    nets = _nets(widths=((8, 16, 16, 2), (8, 16, 16, 2)))
    ref = copy.deepcopy(nets)
    ref[1][2].weight = ref[0][2].weight                                             # hard sharing by hand
    hard = share(nets, "classical", block=(4, 4), init="copy")                     # location i -> model 0's block i
    assert hard.alignment().tolist() == list(range(16)) * 2 and hard.config.context == 0
    opt = torch.optim.Adam(list({id(q): q for m in ref for q in m.parameters()}.values()), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 8, generator=g), torch.randint(0, 2, (16,), generator=g)
    for _ in range(3):
        opt.zero_grad()
        sum(F.cross_entropy(m(x), y) for m in ref).backward()
        opt.step()
    tr = _engine(hard, _tasks(), 3)
    tr.fit()
    plain = export(hard)
    for a, b in zip(plain, ref):
        mine, theirs = dict(a.named_parameters()), dict(b.named_parameters())
        assert sorted(mine) == sorted(theirs)
        for n, q in theirs.items():
            torch.testing.assert_close(mine[n], q, rtol=1e-5, atol=1e-6, msg=n)


def test_parallel_adapters_add_a_learned_diagonal_to_the_shared_block():
    ads = share(_nets(), "adapters", block=(4, 4))
    g0, g1 = ads.generators
    assert g0.adapter.shape == (g0.num_locations, 4) and not g0.adapter.any()
    x = torch.randn(3, 8)
    plain = share(_nets(), "classical", block=(4, 4))
    assert torch.equal(ads[0](x), plain[0](x))                                      # zero adapters: classical
    with torch.no_grad():
        g0.adapter.copy_(torch.randn_like(g0.adapter))
    base = g0._blocks().view(-1, 4, 4)                                              # (L, m, n): B[a, b]
    torch.testing.assert_close(g0.blocks().view(-1, 4, 4), base + torch.diag_embed(g0.adapter))
    w = export(ads)[0][2].weight.detach()                                          # model 0's first middle layer
    diff = w - reassemble(base.reshape(base.shape[0], -1).detach(), g0.writer.slots[0].index)
    expect = torch.zeros(16, 16)
    for i in range(4):                     # tile (in-block i, out-block j) is location i*4 + j; W[j*4+a, i*4+a]
        for j in range(4):
            for a in range(4):
                expect[j * 4 + a, i * 4 + a] = g0.adapter[i * 4 + j, a]
    torch.testing.assert_close(diff, expect)
    tr = _engine(ads, _tasks(), 4)
    before = g1.adapter.detach().clone()
    tr.fit()
    assert not torch.equal(before, g1.adapter) and ads.alignment().tolist() == plain.alignment().tolist()
    fresh = share(_nets(seed=3), "classical", block=(4, 4))
    fresh.load_state_dict(ads.state_dict())                                         # the checkpoint brings them
    assert torch.equal(fresh[1](x), ads[1](x))


def test_muir_from_the_hierarchical_alignment_searches_from_there():
    torch.manual_seed(0)
    nets = _nets()
    muir = share(nets, "muir-hierarchical", block=(4, 4), context=2, lam=1, p=1.0, n_init=1, n_iter=2,
                 n_generations=3, n_final=1)
    L0 = muir.generators[0].num_locations
    start = muir.alignment().clone()
    assert start.tolist() == list(range(L0)) + list(range(muir.num_locations - L0))
    search = MuirSearch(muir)
    tr = _engine(muir, _tasks(), search_steps(muir.config))
    tr.callbacks.append(search)
    tr.fit()
    assert [h["generation"] for h in search.history] == [1, 2, 3]
    assert not torch.equal(muir.alignment(), start)                                 # p = 1: the search moved
    assert sum(n.endswith("generator.z") for n, _ in muir.named_parameters()) == 2  # contexts are trained


def test_c0_search_runs_on_the_engine_and_exports_identically():
    muir = reparameterize(_nets(), block=(4, 4), context=0, lam=1, p=1.0, n_init=0, n_iter=2, n_generations=2)
    search = MuirSearch(muir)
    tr = _engine(muir, _tasks(), search_steps(muir.config))
    tr.callbacks.append(search)
    tr.fit()
    assert [h["generation"] for h in search.history] == [1, 2]
    x = torch.randn(5, 8)
    for t, p in zip(muir.tasks, export(muir)):
        assert torch.equal(t(x), p(x))


def test_register_a_sharing_method():
    @register_sharing("test-everything-shares-one", help="every location uses hypermodule 0")
    def _one(models, cfg, **kw):
        m = reparameterize(models, config=cfg, **kw)
        m.fix_alignment(torch.zeros_like(m.alignment()))
        return m
    try:
        m = share(_nets(), "test-everything-shares-one", block=(4, 4), context=1)
        assert m.stats()["active"] == 1
        with pytest.raises(TesseraError, match="registered twice"):
            register_sharing("test-everything-shares-one")(_one)
        with pytest.raises(TesseraError, match="unknown sharing method"):
            share(_nets(), "nope")
    finally:
        sharing.SHARING._items.pop("test-everything-shares-one")
