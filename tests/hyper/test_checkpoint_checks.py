"""Loading MUiR state refuses a checkpoint of another location table or with out-of-range hypermodule ids
(each check by a hand-altered state dict), and a correct one loads exactly."""
import pytest
import torch
from torch import nn

from tessera.errors import CheckpointError
from tessera.hyper import reparameterize
from tessera.hyper.sharing import add_adapters

G = "tasks.0.generator."


def _muir(context=1):
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(2)]
    return reparameterize(nets, block=(4, 4), context=context, lam=1, verbose=False)


def _sd(**change):
    sd = {k: v.clone() for k, v in _muir().state_dict().items()}
    for k, f in change.items():
        sd[G + k] = f(sd[G + k])
    return sd


def test_a_correct_state_loads_exactly():
    a, b = _muir(), _muir()
    with torch.no_grad():
        a.bank.H.add_(1.0)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


@pytest.mark.parametrize("key, change, message", [
    ("layout", lambda t: t.flip(0), r"^checkpoint tasks\.0\.generator\. was made for another location table \(L=4, "
                                    r"\(m, n, c, lambda\)=\(4, 4, 1, 1\)\) than this one \(L=4, \(4, 4, 1, 1\)\)"),
    ("spec", lambda t: t + 1, r"was made for another location table \(L=4, \(m, n, c, lambda\)=\(5, 5, 2, 2\)\)"),
    ("psi0", lambda t: torch.where(torch.arange(len(t)) == 1, 8, t),
     r"^checkpoint tasks\.0\.generator\.psi0 refers to hypermodule 8 but the bank has ids 0\.\.7; the checkpoint belongs"),
    ("psi0", lambda t: torch.where(torch.arange(len(t)) == 1, -1, t), r"psi0 refers to hypermodule -1 but"),  # names the bad id
    ("cand", lambda t: t + 9, r"^checkpoint tasks\.0\.generator\.cand refers to hypermodule (9|1[0-6]) but the bank has ids 0\.\.7"),
])
def test_a_state_of_another_reparameterization_is_refused(key, change, message):
    sd = _sd(**{key: change})
    with pytest.raises(CheckpointError, match=message):
        _muir().load_state_dict(sd)


@pytest.mark.parametrize("key", ["layout", "spec", "psi0", "cand"])
def test_a_state_without_the_alignment_is_refused(key):
    sd = _sd()
    del sd[G + key]
    with pytest.raises(CheckpointError, match=rf"^checkpoint lacks tasks\.0\.generator\.{key} \(the alignment"):
        _muir().load_state_dict(sd)


def test_a_generator_loaded_on_its_own_is_named_model():
    sd = _muir()[0].generator.state_dict()
    sd["layout"] = sd["layout"].flip(0)
    with pytest.raises(CheckpointError, match=r"^checkpoint model was made for another location table \(L=4, "):
        _muir()[0].generator.load_state_dict(sd)


def test_strict_loading_still_reports_unexpected_missing_and_mis_sized_entries():
    sd = _sd()
    sd[G + "bogus"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "tasks\.0\.generator\.bogus"'):
        _muir().load_state_dict(sd)
    assert _muir().load_state_dict(sd, strict=False).unexpected_keys == [G + "bogus"]
    sd = _sd()
    del sd[G + "scores"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "tasks\.0\.generator\.scores"'):
        _muir().load_state_dict(sd)
    sd = _sd(z=lambda t: torch.zeros(len(t), 2))
    with pytest.raises(RuntimeError, match=r"size mismatch for tasks\.0\.generator\.z: copying a param with "
                                           r"shape torch\.Size\(\[4, 2\]\)"):
        _muir().load_state_dict(sd)


def test_a_checkpoint_with_parallel_adapters_loads_into_a_model_without():
    a = add_adapters(_muir())
    with torch.no_grad():
        for g in a.generators:
            g.adapter.normal_()
    b = _muir()
    assert b.group_members == [[0, 1]]                 # vectorized: its batched forward knows no adapters
    b.load_state_dict(a.state_dict())
    for ga, gb in zip(a.generators, b.generators):
        assert gb.adapter is not None and torch.equal(gb.adapter, ga.adapter)
        assert torch.equal(gb.blocks(), ga.blocks())
    x = torch.randn(3, 4)
    assert b.group_members == [] and all(torch.equal(p, q) for p, q in zip(b([x, x]), a([x, x])))


def test_a_compacted_checkpoint_loads_into_a_vectorized_model():
    a = _muir(context=2)
    with torch.no_grad():
        a.bank.H.normal_()
    a.fix_alignment(torch.tensor([0, 0, 0, 0, 0, 0, 6, 7]))        # hypermodules 6 and 7 used once (< c = 2)
    assert a.compact() == 2
    b = _muir(context=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 4)
    assert b.group_members == [] and all(torch.equal(p, q) for p, q in zip(b([x, x]), a([x, x])))
