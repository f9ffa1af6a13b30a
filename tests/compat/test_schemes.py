"""Joint and incremental training on the engine: a hand-written reference loop, frozen auxiliary heads
stay bit-identical, exact resume after a simulated kill."""
import pytest
import torch
import torch.nn.functional as F

from tessera.compat import DCC, RP, Member, RotationTask, train_incremental, train_joint
from tessera.compat.bn import frozen
from tessera.compat.components import split_at
from tessera.compat.methods import NetSpec, train_compatible
from tessera.compat.models import build
from tessera.compat.tasks import load_pair
from tessera.errors import ConfigError
from tessera.train import TrainConfig, mix_seed

from compat_helpers import Killed, count_steps

CLS = [str(i) for i in range(4)]


def _cfg(steps, **kw):
    base = dict(steps=steps, batch_size=16, seed=3, log_every=0, checkpoint_every=0, progress="off",
                ema={"enabled": False}, schedule={"name": "constant"},
                optim={"name": "adam", "lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0})
    base.update(kw)
    return TrainConfig(**base)


def _member(name, seed, n=48, norm="bn"):
    torch.manual_seed(seed)
    ext, head = split_at(build("resnet", num_classes=4, width=2, norm=norm), "stage2")
    g = torch.Generator().manual_seed(seed)
    return Member(name, ext, head, torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g), CLS)


def _aux(rotation="random", norm="bn"):
    torch.manual_seed(0)
    heads = [split_at(build("resnet", num_classes=4, width=2, norm=norm), "stage2")[1] for _ in range(2)]
    return [DCC(heads[0], [CLS, CLS]), RP(heads[1], RotationTask(rotation))]


def _state(mods):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in mods]


def _same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_joint_matches_a_hand_written_reference_loop():
    import copy
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux("random")
    ref_a, ref_b, ref_aux = copy.deepcopy(a), copy.deepcopy(b), copy.deepcopy(aux)
    res = train_joint([a, b], aux, _cfg(4))
    assert res["step"] == 4 and {"a", "a.target", "a.dcc", "a.rp"} <= set(res["losses"])
    # the reference: member s % 2 on its (s // 2)-th batch of the documented order, Eq. 1 + Eq. 2, one Adam
    mods = [ref_a.extractor, ref_a.head, ref_b.extractor, ref_b.head, *ref_aux]
    params = list({id(p): p for m in mods for p in m.parameters()}.values())
    opt = torch.optim.Adam(params, lr=1e-2, eps=1e-8)
    for m in mods:
        m.train()
    for s in range(4):
        t, k = s % 2, s // 2
        m = (ref_a, ref_b)[t]
        idx = torch.randperm(48, generator=torch.Generator().manual_seed(mix_seed(3, t, 0)))[16 * k:16 * (k + 1)]
        x, y = m.x[idx], m.y[idx]
        f = m.extractor(x)
        keep = torch.ones(16, dtype=torch.bool)                       # every class is common here
        dcc = F.cross_entropy(ref_aux[0].head(f[keep]), y[keep], reduction="sum") / 16
        g = torch.Generator().manual_seed(mix_seed(3, 104729, s, t, 1, 0))   # the engine's per-step generator
        xr, yr = RotationTask("random").make_batch(x, g)
        loss = F.cross_entropy(m.head(f), y) + dcc + F.cross_entropy(ref_aux[1].head(m.extractor(xr)), yr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for got, want in ((a.extractor, ref_a.extractor), (b.head, ref_b.head), (aux[0], ref_aux[0]), (aux[1], ref_aux[1])):
        for (k, v), w in zip(got.state_dict().items(), want.state_dict().values()):
            assert torch.allclose(v.float(), w.float(), atol=1e-6, rtol=0), k
    assert res["trained_params"] == sum(p.numel() for p in params)


def test_incremental_freezes_aux_heads_bit_exactly():
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux()
    init = _state(aux)
    r0 = train_incremental([a], aux, _cfg(3))                         # member a trains the aux heads
    after_a = _state(aux)
    b_before = _state([b.extractor, b.head])
    r1 = train_incremental([b], aux, _cfg(3), train_aux_first=False)  # b against them, frozen
    assert not _same(init, after_a) and _same(after_a, _state(aux))   # parameters AND BN buffers
    assert not _same(b_before, _state([b.extractor, b.head]))
    assert all(p.requires_grad for m in aux for p in m.parameters())  # unfrozen afterwards
    n_aux = sum(p.numel() for m in aux for p in m.parameters())
    n_b = sum(p.numel() for m in (b.extractor, b.head) for p in m.parameters())
    assert r1[0]["trained_params"] == n_b and r0[0]["trained_params"] == n_b + n_aux
    assert r1[0]["losses"]["b.rp"] > 0 and r1[0]["losses"]["b.dcc"] > 0  # the frozen heads still shape b


def test_incremental_two_members_map_dcc_labels_per_member():
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux()
    seen = {}
    orig = aux[0].loss

    def spy(ext, x, y, feats, task, generator=None):
        seen[task] = seen.get(task, 0) + 1
        return orig(ext, x, y, feats, task, generator)

    aux[0].loss = spy
    res = train_incremental([a, b], aux, _cfg(2))
    assert seen == {0: 2, 1: 2} and len(res) == 2
    assert res[1]["losses"].keys() >= {"b.dcc", "b.rp", "b.target"}


def test_joint_alternates_members():
    a, b = _member("a", 0), _member("b", 1)
    order = []
    a.extractor.register_forward_pre_hook(lambda *_: order.append("a"))
    b.extractor.register_forward_pre_hook(lambda *_: order.append("b"))
    train_joint([a, b], [], _cfg(4))
    assert order == ["a", "b", "a", "b"]


def test_ema_refused_and_members_required():
    with pytest.raises(ConfigError, match="ema"):
        train_joint([_member("a", 0)], [], _cfg(2, ema={"enabled": True}))
    with pytest.raises(ConfigError, match="at least one Member"):
        train_joint([], [], _cfg(2))


def test_frozen_context_restores_grad_flags():
    m = _member("a", 0).head
    m.fc.weight.requires_grad_(False)
    with frozen(m):
        assert not any(p.requires_grad for p in m.parameters())
    assert not m.fc.weight.requires_grad and m.fc.bias.requires_grad


@pytest.mark.parametrize("scheme", ["joint", "incremental"])
def test_exact_resume_after_a_kill(tmp_path, monkeypatch, scheme):
    a, b = load_pair("digits_domains", size=8, n_train=96)
    spec = NetSpec("resnet", {"width": 2})
    cfg = _cfg(6, checkpoint_every=2, seed=1)

    def run(out, kill_at=None):
        calls = count_steps(monkeypatch, kill_at)
        try:
            return train_compatible("IIW+RP+DCC", [a, b], spec, cfg, scheme=scheme, rotation="random",
                                    out_dir=out), calls
        except Killed:
            return None, calls

    straight, c0 = run(tmp_path / "straight")
    assert c0["n"] == 12
    killed, c1 = run(tmp_path / "killed", kill_at=9)  # joint: global step 9; incremental: step 3 of member 1
    assert killed is None and c1["n"] == 9
    resumed, c2 = run(tmp_path / "killed")
    # joint resumes from the checkpoint at step 8 (4 steps left); incremental: member 0 is done, member 1
    # resumes from its step-2 checkpoint (4 steps left)
    assert c2["n"] == 4
    for ms, mr in zip(straight.members + [None], resumed.members + [None]):
        mods = [(ms.extractor, mr.extractor), (ms.head, mr.head)] if ms is not None else list(zip(straight.aux, resumed.aux))
        for s_mod, r_mod in mods:
            for (k, v), w in zip(s_mod.state_dict().items(), r_mod.state_dict().values()):
                assert torch.equal(v, w), k
