"""Joint and incremental training; frozen auxiliary heads stay bit-identical."""
import torch

from tessera.compat import DCC, RP, Member, RotationTask, TrainCfg, frozen, train_incremental, train_joint
from tessera.compat.models import build
from tessera.compat.components import split_at

CLS = [str(i) for i in range(4)]


def _member(name, seed, n=48):
    torch.manual_seed(seed)
    ext, head = split_at(build("resnet", num_classes=4, width=2), "stage2")
    g = torch.Generator().manual_seed(seed)
    return Member(name, ext, head, torch.rand(n, 1, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g), CLS)


def _aux():
    torch.manual_seed(0)
    heads = [split_at(build("resnet", num_classes=k, width=2), "stage2")[1] for k in (4, 4)]
    return [DCC(heads[0], [CLS, CLS]), RP(heads[1], RotationTask("random"), generator=torch.Generator().manual_seed(0))]


def _state(mods):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in mods]


def _same(a, b):
    return all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_frozen_aux_heads_bit_identical_through_incremental_training():
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux()
    cfg = TrainCfg(steps=3, batch_size=16, seed=0)
    hist = train_incremental([a], aux, cfg)  # member a trains the aux heads
    trained = _state(aux)
    b_before = _state([b.extractor, b.head])
    train_incremental([b], aux, cfg, train_aux_first=False)  # b against the frozen heads
    assert _same(trained, _state(aux))  # parameters AND BN buffers unchanged
    assert not _same(b_before, _state([b.extractor, b.head]))
    assert all(p.requires_grad for m in aux for p in m.parameters())  # unfrozen afterwards
    assert len(hist) == 1 and {"target", "dcc", "rp"} <= set(hist[0][-1])


def test_incremental_first_member_trains_aux_then_frozen():
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux()
    init = _state(aux)
    seen = {}
    orig = aux[0].loss

    def spy(ext, x, y, feats, task):
        seen.setdefault(task, 0)
        seen[task] += 1
        return orig(ext, x, y, feats, task)

    aux[0].loss = spy
    train_incremental([a, b], aux, TrainCfg(steps=2, batch_size=16))
    assert not _same(init, _state(aux)) and seen == {0: 2, 1: 2}  # DCC maps each member's labels


def test_joint_alternates_and_updates_shared_heads():
    a, b = _member("a", 0), _member("b", 1)
    aux = _aux()
    init = _state(aux)
    hist = train_joint([a, b], aux, TrainCfg(steps=2, batch_size=16))
    assert [h["member"] for h in hist] == [0, 1, 0, 1]
    assert not _same(init, _state(aux))


def test_frozen_context_restores_grad_flags():
    m = _member("a", 0).head
    m.fc.weight.requires_grad_(False)
    with frozen(m):
        assert not any(p.requires_grad for p in m.parameters())
    assert not m.fc.weight.requires_grad and m.fc.bias.requires_grad
