"""Loading MUiR state refuses a checkpoint of another location table or with out-of-range hypermodule ids
(each check by a hand-altered state dict), and a correct one loads exactly."""
import pytest
import torch
from torch import nn

from tessera.errors import CheckpointError
from tessera.hyper import reparameterize

G = "tasks.0.generator."


def _muir():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(2)]
    return reparameterize(nets, block=(4, 4), context=1, lam=1, verbose=False)


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
