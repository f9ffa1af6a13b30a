"""The clustering-strength sweep: splits held out from training, which row is swept, how alpha is picked."""
import pytest
import torch

from tessera.errors import ConfigError
from tessera.experiments import mixture_alpha as ma
from tessera.experiments.mixture_common import Model
from tessera.mixture import TaskSplit, mixture_clustering, multitask_model


def test_split_val_takes_validation_from_the_training_part_only():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    fit, val = ma.split_val({"a": TaskSplit(x, y, -x, -y)}, 3)
    assert fit["a"].y_train.tolist() == list(range(7)) and val["a"][1].tolist() == [7, 8, 9]
    assert fit["a"].y_eval.tolist() == (-y).tolist()                 # the evaluation part is untouched
    with pytest.raises(ConfigError, match="n_val"):
        ma.split_val({"a": TaskSplit(x, y, x, y)}, 10)


def test_sweep_models_take_the_largest_bank_per_init():
    rows = (Model("b", "baseline"), Model("r1", "mixture", 1), Model("r2", "mixture", 2),
            Model("p2", "mixture_patches", 2), Model("d1", "mixture_patches", 1, "diag"))
    got = ma.sweep_models(rows)
    assert {k: m.label for k, m in got.items()} == {"random": "r2", "diag": "d1"}


def _fake_unit(acc, calls):
    """Returns a preset validation accuracy per alpha instead of training."""
    def run_unit(row, alpha, seed):
        calls.append((row.label, alpha, seed))
        return {"val_acc": {"t": acc[alpha]}, "confidence": 0.5,
                "balance": {"ce": 2.0, "reg_at_alpha_1": 0.5, "grad_ce": 0.1, "grad_reg_at_alpha_1": 0.4}}
    return run_unit


@pytest.mark.parametrize("acc, best", [({0.0: 0.5, 1.0: 0.7, 10.0: 0.6}, 1.0),
                                       ({0.0: 0.7, 1.0: 0.7, 10.0: 0.6}, 0.0)])   # a tie goes to the smaller alpha
def test_choose_alphas_picks_the_best_validation_accuracy(acc, best):
    rows = (Model("b", "baseline"), Model("r", "mixture", 2), Model("d", "mixture", 1, "diag"))
    calls = []
    alpha_of, sweeps = ma.choose_alphas(rows, _fake_unit(acc, calls), alphas=(0.0, 1.0, 10.0))
    assert alpha_of == {"random": best, "diag": best}
    assert calls == [(lab, a, 0) for lab in ("r", "d") for a in (0.0, 1.0, 10.0)]     # seed 0, swept rows only
    model, sweep = sweeps["random"]
    assert model.label == "r" and [s["chosen"] for s in sweep].count(True) == 1
    s10 = sweep[2]
    assert s10["reg_over_ce"] == pytest.approx(10 * 0.5 / 2.0) and s10["grad_reg_over_grad_ce"] == pytest.approx(40.0)
    fixed, none = ma.choose_alphas(rows, _fake_unit(acc, calls), alpha=3.0)
    assert fixed == {"random": 3.0, "diag": 3.0} and none == {}


def test_regularizer_balance_matches_a_direct_computation():
    torch.manual_seed(0)
    net = multitask_model("mixture", {"a": 10}, depth=2, num_templates=3, channels=8, patch=4, head_channels=(8, 8))
    x, y = torch.rand(6, 1, 8, 8), torch.arange(6)
    bal = ma.regularizer_balance(net, {"a": TaskSplit(x, y, x, y)}, n=6)
    net.eval()
    r = mixture_clustering(net, "a", alpha=1.0)
    g, = torch.autograd.grad(r, net.mixture["a"])
    ce = torch.nn.functional.cross_entropy(net(x, task="a"), y)
    assert bal["reg_at_alpha_1"] == pytest.approx(float(r.detach())) and bal["ce"] == pytest.approx(float(ce.detach()))
    assert bal["grad_reg_at_alpha_1"] == pytest.approx(float(g.norm()))
