"""reparameterize / export / checkpoints / bad input on an LSTM LM, a LeNet CNN and a 1-D conv net."""
import copy

import pytest
import torch
from torch import nn

from tessera.errors import CheckpointError, ConfigError, ShapeError
from tessera.hyper import MuirConfig, MuirSearch, export, reparameterize, search_steps
from tessera.train import Task, Trainer, TrainConfig


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(30, 16), nn.LSTM(16, 16, 2, batch_first=True), nn.Linear(16, 30)

    def forward(self, x):
        return self.out(self.rnn(self.emb(x))[0])


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 16, 3), nn.Conv2d(16, 16, 3)
        self.f1, self.f2 = nn.Linear(16 * 2 * 2, 32), nn.Linear(32, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c2(torch.max_pool2d(torch.relu(self.c1(x)), 2))), 2)
        return self.f2(torch.relu(self.f1(x.flatten(1))))


class DeepBind(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.mid, self.fc = nn.Conv1d(4, 16, 5), nn.Conv1d(16, 20, 3), nn.Linear(20, 1)

    def forward(self, x):
        return self.fc(torch.relu(self.mid(torch.relu(self.conv(x)))).amax(-1))


def _models(seed=0):
    torch.manual_seed(seed)
    return [LM(), LeNet(), DeepBind()]


def _inputs():
    g = torch.Generator().manual_seed(1)
    return [torch.randint(0, 30, (2, 5), generator=g), torch.randn(2, 1, 16, 16, generator=g),
            torch.randn(2, 4, 20, generator=g)]


def _muir(seed=0, **kw):
    return reparameterize(_models(seed), block=(16, 16), context=4, lam=1, **kw)


def _train(muir, gens=2, steps=2):
    opt = torch.optim.Adam(muir.param_groups(lr=1e-2))
    xs = _inputs()
    for _ in range(gens):
        muir.begin_generation(opt)
        for _ in range(steps):
            opt.zero_grad()
            sum(o.square().mean() for o in muir(xs)).backward()
            opt.step()
        muir.end_generation()
    return opt


def test_three_architectures_share_one_bank_and_train():
    muir = _muir()
    assert muir.targets == [["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l1", "rnn.weight_hh_l1"],
                            ["c2.weight", "f1.weight"], ["mid.weight"]]
    # LSTM: 4 matrices x 4 gates; LeNet c2: 9 kernel positions, f1: 64->32 = 4x2; DeepBind mid: 3 x (1 x 2, edge)
    assert muir.num_locations == 16 + 9 + 8 + 6 == muir.num_modules
    before = muir.bank.H.detach().clone()
    _train(muir, gens=3)
    assert not torch.equal(before, muir.bank.H)
    stats = muir.stats()
    assert stats["generation"] == 3 and stats["active"] <= muir.num_modules
    assert all(isinstance(p, torch.Tensor) and p.grad_fn is None for p in [muir[0].model.rnn.weight_ih_l0])


def test_export_gives_identical_plain_modules():
    muir = _muir()
    _train(muir)
    plain = export(muir)
    for m, p, x in zip(muir.tasks, plain, _inputs()):
        assert torch.equal(m(x), p(x))
        assert not any("generator" in k for k in p.state_dict())
    assert isinstance(plain[0].rnn.weight_ih_l0, nn.Parameter)
    out = plain[0](_inputs()[0]).sum()
    out.backward()
    assert plain[0].rnn.weight_hh_l1.grad is not None


def test_compaction_of_rarely_used_hypermodules_keeps_outputs():
    muir = _muir()
    _train(muir, gens=3)
    xs = _inputs()
    ref = [t(x) for t, x in zip(muir.tasks, xs)]
    n_plain = muir.compact()
    assert n_plain > 0                                                  # c = 4: every module used < 4 times here
    for t, x, r in zip(muir.tasks, xs, ref):
        assert torch.equal(t(x), r)
    stats = muir.stats()
    assert stats["params_compact"] <= stats["params"]
    sd = muir.state_dict()
    fresh = _muir(seed=5)
    fresh.load_state_dict(sd)                                           # a compacted checkpoint loads too
    for t, x, r in zip(fresh.tasks, xs, ref):
        assert torch.equal(t(x), r)


def test_state_dict_roundtrip_into_fresh_reparameterization_and_deepcopy():
    muir = _muir()
    _train(muir)
    muir.begin_generation()                                             # mid-generation: soft merge active
    xs = _inputs()
    ref = [t(x) for t, x in zip(muir.tasks, xs)]
    fresh = _muir(seed=3)
    fresh.load_state_dict(muir.state_dict())
    assert all(torch.equal(t(x), r) for t, x, r in zip(fresh.tasks, xs, ref))
    assert torch.equal(fresh.candidates(), muir.candidates())
    twin = copy.deepcopy(muir)
    assert all(torch.equal(t(x), r) for t, x, r in zip(twin.tasks, xs, ref))
    with torch.no_grad():
        twin.bank.H.add_(1.0)
    assert not torch.equal(twin[2](xs[2]), ref[2]) and torch.equal(muir[2](xs[2]), ref[2])
    single = copy.deepcopy(muir[0])                                     # one task alone is a normal module
    single.load_state_dict(muir[0].state_dict())
    assert torch.equal(single(xs[0]), ref[0])
    muir.train(), muir.eval()


def test_checkpoint_from_another_location_table_is_rejected():
    sd = _muir().state_dict()
    other = reparameterize(_models(), block=(8, 8), context=4, lam=1)
    with pytest.raises(CheckpointError, match="another location table") as e:
        other.load_state_dict(sd)
    assert "\n" not in str(e.value)
    partial = {k: v for k, v in sd.items() if not k.endswith("psi0")}
    with pytest.raises(CheckpointError, match="lacks"):
        _muir().load_state_dict(partial)


def test_bad_inputs_are_one_line_errors():
    def err(exc, fn, match):
        with pytest.raises(exc, match=match) as e:
            fn()
        assert "\n" not in str(e.value)
    err(ShapeError, lambda: reparameterize(_models(), block=(32, 32), strict=True), "cannot be generated")
    err(ConfigError, lambda: reparameterize(_models(), block=(32, 32)), "model 0: .* leave no weight .*too small")
    err(ConfigError, lambda: reparameterize(_models(), context=-1), "context must be >= 0")
    err(ConfigError, lambda: reparameterize(_models(), target_modules="decoder.*"), "leave no weight")
    mixed = _models()
    mixed[1] = mixed[1].double()
    err(ConfigError, lambda: reparameterize(mixed, block=(4, 4)), "different devices/dtypes")
    err(ConfigError, lambda: MuirConfig(block=(0, 4)).validate(), "block")


def test_identity_init_keeps_a_pretrained_model():
    torch.manual_seed(0)
    net = LeNet()
    ref = copy.deepcopy(net)
    muir = reparameterize(net, block=(16, 16), context=2, init="copy")
    x = _inputs()[1]
    torch.testing.assert_close(muir[0](x), ref(x), rtol=0, atol=0)


def _search_setup(seed=0):
    torch.manual_seed(seed)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(3)]
    muir = reparameterize(nets, block=(4, 4), context=1, lam=2, n_init=2, n_iter=3, n_generations=4, n_final=2,
                          vectorize=False)   # bit-for-bit: both sides run each task on its own
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    return muir, x, y


def _engine(muir, x, y, callbacks, out_dir=None):
    tasks = [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x), order="sequential")
             for i in range(3)]                                   # full batch in order, as the reference
    cfg = TrainConfig(steps=search_steps(muir.config), batch_size=16, multitask="sum", progress="off", log_every=0,
                      checkpoint_every=3 if out_dir else 0, optim={"name": "adam", "lr": 1e-2, "eps": 1e-8,
                      "weight_decay": 0.0}, schedule={"name": "constant"}, ema={"enabled": False})
    return Trainer(muir, tasks, cfg, out_dir=out_dir, param_groups=muir.param_groups(lr=1e-2), callbacks=callbacks)


def _scripted_validation(muir, values, snap):
    it = iter(values)

    def validate():
        v = next(it)
        if v == min(values):
            snap["psi0"] = muir.alignment().clone()
            snap["state"] = {k: t.clone() for k, t in muir.state_dict().items()}
        return v
    return validate


def test_search_on_the_engine_equals_a_hand_written_algorithm_2():
    """Reference: Algorithm 2 written out by hand with a plain Adam (n_init, generations with the
    scores' optimizer state reset, best-validation restore, n_final) == MuirSearch on the engine."""
    vals = [3.0, 1.0, 2.0, 5.0]
    ref, x, y = _search_setup()
    opt = torch.optim.Adam(ref.param_groups(lr=1e-2))

    def step():
        opt.zero_grad()
        sum((o - y).square().mean() for o in ref([x] * 3)).backward()
        opt.step()
    cfg, best = ref.config, None
    ref.fix_alignment()
    for _ in range(cfg.n_init):
        step()
    for v in vals:
        ref.begin_generation(opt)
        for _ in range(cfg.n_iter):
            step()
        ref.end_generation()
        if best is None or v < best[0]:
            best = (v, copy.deepcopy(ref.state_dict()), copy.deepcopy(opt.state_dict()), ref.search.state_dict())
    ref.load_state_dict(best[1]), opt.load_state_dict(best[2]), ref.search.load_state_dict(best[3])
    ref.fix_alignment()
    for _ in range(cfg.n_final):
        step()

    muir, x, y = _search_setup()
    snap = {}
    search = MuirSearch(muir, validate=_scripted_validation(muir, vals, snap))
    _engine(muir, x, y, [search]).fit()
    assert [h["val"] for h in search.history] == vals and [h["step"] for h in search.history] == [5, 8, 11, 14]
    assert torch.equal(muir.alignment(), ref.alignment())
    assert torch.equal(muir.alignment(), snap["psi0"])                   # generation 2's alignment restored
    assert not any(g.is_merging for g in muir.generators)
    for k, v in ref.state_dict().items():
        assert torch.equal(muir.state_dict()[k], v), k                   # bit for bit


def test_search_resumes_exactly_after_a_kill(tmp_path):
    vals = [3.0, 1.0, 2.0, 5.0]
    muir, x, y = _search_setup()
    _engine(muir, x, y, [MuirSearch(muir, validate=_scripted_validation(muir, vals, {}))]).fit()

    class Kill:
        def on_step_end(self, trainer, step, logs):
            if step == 10:
                raise KeyboardInterrupt

    part, x, y = _search_setup()
    with pytest.raises(KeyboardInterrupt):
        _engine(part, x, y, [MuirSearch(part, validate=_scripted_validation(part, vals, {})), Kill()],
                out_dir=tmp_path).fit()
    again, x, y = _search_setup()
    ran = []
    search = MuirSearch(again, validate=_scripted_validation(again, vals[2:], {}))   # generations 1-2 are in the ckpt
    tr = _engine(again, x, y, [search, lambda t, s, logs: ran.append(s)], out_dir=tmp_path)
    tr.fit(resume=True)
    assert ran == list(range(10, 17))                                     # resumed at the step-9 checkpoint
    assert [h["val"] for h in search.history] == vals
    for k, v in muir.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k
