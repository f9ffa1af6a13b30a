"""``group(x, input_index=idx)`` == ``group(x[idx])``: members that share their data, on every route."""
import pytest
import torch
from torch import nn

from tessera.errors import ShapeError
from tessera.hyper import reparameterize, vectorize
from tessera.hyper.batched import shared_plan

MODELS = {   # name: (factory, input sample shape, how the group is made)
    "linear_no_bias": (lambda: nn.Linear(5, 1, bias=False), (5,), "plain"),
    "linear_bias": (lambda: nn.Linear(5, 3), (5,), "plain"),
    "mlp_act_first": (lambda: nn.Sequential(nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)), (5,), "plain"),
    "muir_linear": (lambda: nn.Linear(5, 1, bias=False), (5,), "muir"),
    "muir_mlp": (lambda: nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)), (4,), "muir"),
    "cnn_vmap": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)), (1, 4, 4),
                 "plain"),
}


def _group(name, T):
    make, shape, kind = MODELS[name]
    torch.manual_seed(0)
    nets = [make().double() for _ in range(T)]
    if kind == "plain":
        return vectorize(nets), shape
    muir = reparameterize(nets, context=2, lam=2, p=1.0, block=(4, 1) if name == "muir_linear" else (2, 2),
                          target_modules=[""] if name == "muir_linear" else ["0", "2"], verbose=False, vectorize=True)
    return muir.task_groups[0], shape


@pytest.mark.parametrize("index", [[2, 0, 1, 0, 1, 2], [0, 0, 1, 1, 2, 2], [1, 1, 0, 2, 1, 0]],
                         ids=["interleaved", "blocks", "uneven"])
@pytest.mark.parametrize("name", list(MODELS))
def test_shared_inputs_equal_copied_inputs_outputs_and_gradients(name, index):
    group, shape = _group(name, 6)
    idx = torch.tensor(index)
    x = torch.randn(3, 4, *shape, dtype=torch.float64)                # (D, B, ...): 3 distinct inputs
    out_shared = group(x, input_index=idx)
    g_shared = torch.autograd.grad(out_shared.square().sum(), list(group.parameters()), allow_unused=True)
    out_copied = group(x[idx])
    g_copied = torch.autograd.grad(out_copied.square().sum(), list(group.parameters()), allow_unused=True)
    torch.testing.assert_close(out_shared, out_copied, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_shared, g_copied):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    for t in range(6):                                                 # and each member on its own row
        torch.testing.assert_close(out_shared[t], group.members[t](x[idx[t]]), rtol=1e-12, atol=1e-12)


def test_shared_plan_groups_readers_and_refuses_uneven_ones():
    order, inverse = shared_plan(torch.tensor([1, 0, 1, 0]), 2)
    assert order.tolist() == [1, 3, 0, 2] and inverse[order].tolist() == [0, 1, 2, 3]
    assert shared_plan(torch.tensor([1, 0, 1, 1]), 2) is None          # 1 reader vs 3
    assert shared_plan(torch.tensor([1, 1, 1, 1]), 2) is None          # row 0 unread
    idx = torch.tensor([0, 1])
    assert shared_plan(idx, 2) is not None
    idx[0] = 1                                                         # changed in place: planned again
    assert shared_plan(idx, 2) is None


def test_input_index_errors_name_the_problem():
    group, _ = _group("linear_bias", 4)
    x = torch.randn(2, 3, 5, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"input_index must be an int64 tensor of shape \(4,\) \(one input row per "
                                         r"member\), got int64 \(3,\)"):
        group(x, input_index=torch.tensor([0, 1, 0]))
    with pytest.raises(ShapeError, match=r"input_index must be .*got float32 \(4,\)"):
        group(x, input_index=torch.zeros(4))
    with pytest.raises(ShapeError, match=r"input_index holds row 2, the inputs have rows 0..1; pass inputs with "
                                         r"one row per distinct input \(dim 0\)"):
        group(x, input_index=torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ShapeError, match="input_index holds row -1"):
        group(x, input_index=torch.tensor([0, -1, 1, 0]))
