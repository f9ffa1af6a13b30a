"""The clustering-strength sweep: splits held out from training, which row is swept, how alpha is picked."""
import pytest
import torch

from tessera.errors import ConfigError
from tessera.experiments import mixture_alpha as ma
from tessera.experiments.mixture_common import Model
from tessera.mixture import TaskSplit, mixture_clustering, multitask_model


def test_holdout_splits_the_training_part_only():
    x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
    val = ma.holdout({"a": TaskSplit(x, y, -x, -y)}, 3)["a"]
    assert val.y_train.tolist() == list(range(7)) and val.y_eval.tolist() == [7, 8, 9]   # eval part unused
    with pytest.raises(ConfigError, match="n_val"):
        ma.holdout({"a": TaskSplit(x, y, x, y)}, 10)


def test_sweep_models_take_the_largest_bank_per_init():
    rows = (Model("b", "baseline"), Model("r1", "mixture", 1), Model("r2", "mixture", 2),
            Model("p2", "mixture_patches", 2), Model("d1", "mixture_patches", 1, "diag"))
    got = ma.sweep_models(rows)
    assert {k: m.label for k, m in got.items()} == {"random": "r2", "diag": "d1"}


class _FakeUnits:
    """Returns a preset held-out accuracy per alpha instead of training."""

    def __init__(self, acc):
        self.acc = acc

    def run(self, key, fn):
        a = float(key[-1].split("=")[1])
        return {"val_acc": {"t": self.acc[a]}, "confidence": 0.5,
                "balance": {"ce": 2.0, "reg_at_alpha_1": 0.5, "grad_ce": 0.1, "grad_reg_at_alpha_1": 0.4}}


@pytest.mark.parametrize("acc, best", [({0.0: 0.5, 1.0: 0.7, 10.0: 0.6}, 1.0),
                                       ({0.0: 0.7, 1.0: 0.7, 10.0: 0.6}, 0.0)])   # a tie goes to the smaller alpha
def test_choose_alpha_picks_the_best_held_out_accuracy(acc, best):
    data = {"t": TaskSplit(torch.zeros(20, 1, 8, 8), torch.zeros(20, dtype=torch.long), None, None)}
    alpha, sweep = ma.choose_alpha(_FakeUnits(acc), data, Model("m", "mixture", 2), heads={"t": 10}, depth=2,
                                   arch={}, steps=1, batch=4, n_val=5, device="cpu", ckpt=0, alphas=(0.0, 1.0, 10.0))
    assert alpha == best and [s["chosen"] for s in sweep].count(True) == 1
    s10 = sweep[2]
    assert s10["reg_over_ce"] == pytest.approx(10 * 0.5 / 2.0) and s10["grad_reg_over_grad_ce"] == pytest.approx(40.0)


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
