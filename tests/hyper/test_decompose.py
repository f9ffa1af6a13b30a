"""Universal decomposition (§3.1): any weight shape cuts into blocks and reassembles exactly."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tessera.errors import ConfigError, ShapeError
from tessera.hyper.decompose import decompose, plan_weight, reassemble
from tessera.hyper.targets import find_targets
from tessera.hyper.views import views_of

dims = st.integers(1, 9)


@settings(max_examples=60, deadline=None)
@given(gates=st.sampled_from([1, 3, 4]), out=dims, inp=dims, kernel=st.lists(st.integers(1, 3), max_size=2),
       m=dims, n=dims)
def test_any_shape_roundtrips_exactly(gates, out, inp, kernel, m, n):
    m, n = min(m, inp), min(n, out)                       # blocks must fit (checked separately)
    shape = torch.Size([gates * out, inp, *kernel])
    plan = plan_weight(shape, gates, (m, n))
    w = torch.randn(shape, dtype=torch.float64)
    blocks = decompose(w, plan.index, plan.count, (m, n))
    assert blocks.shape == (plan.count, m * n)
    assert torch.equal(reassemble(blocks, plan.index), w)
    # every weight element is covered exactly once; the rest of the blocks is edge overflow (zeros)
    assert torch.unique(plan.index).numel() == w.numel()
    k = 1
    for s in kernel:
        k *= s
    assert plan.count == gates * k * -(-inp // m) * -(-out // n)
    assert int((blocks != 0).sum()) <= w.numel()


def test_block_semantics_input_rows_output_cols():
    w = torch.arange(24.0).view(4, 6)                      # Linear(6 -> 4)
    plan = plan_weight(w.shape, 1, (3, 2))                 # 3 inputs x 2 outputs
    blocks = decompose(w, plan.index, plan.count, (3, 2)).view(-1, 3, 2)
    for l, (g, kp, i, j) in enumerate(plan.table.tolist()):
        torch.testing.assert_close(blocks[l], w[j * 2:(j + 1) * 2, i * 3:(i + 1) * 3].T)


def test_lstm_gates_and_conv_kernel_positions():
    lstm = nn.LSTM(8, 4)
    assert [(v.param, v.gates) for v in views_of(lstm)] == [("weight_ih_l0", 4), ("weight_hh_l0", 4)]
    assert [v.gates for v in views_of(nn.GRU(8, 4, 2))] == [3, 3, 3, 3]
    plan = plan_weight(lstm.weight_hh_l0.shape, 4, (4, 4))
    assert plan.grid == (4, 1, 1, 1)                       # one block per gate
    conv = nn.Conv2d(4, 8, 3)
    plan = plan_weight(conv.weight.shape, 1, (4, 4))
    assert plan.grid == (1, 9, 1, 2) and plan.count == 18  # one matrix per kernel position


def test_block_too_large_is_one_line_error():
    with pytest.raises(ShapeError, match="does not fit") as e:
        plan_weight(torch.Size([4, 3]), 1, (4, 4), "net.fc.weight")
    assert "\n" not in str(e.value)


def _names(model, **kw):
    return [t.name for t in find_targets(model, block=kw.pop("block", (2, 2)), **kw)[0]]


def test_default_targets_skip_first_and_last_layer():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
                        nn.Linear(4, 4), nn.Linear(4, 2))
    assert _names(net) == ["2.weight", "4.weight"]
    lm = nn.ModuleDict({"emb": nn.Embedding(10, 4), "rnn": nn.LSTM(4, 4, 2), "out": nn.Linear(4, 10)})
    assert _names(lm) == [f"rnn.weight_{k}_l{i}" for i in range(2) for k in ("ih", "hh")]
    assert _names(net, target_modules=["4", "5"]) == ["4.weight", "5.weight"]
    with pytest.raises(ConfigError, match="leave no weight"):
        _names(net, target_modules="encoder.*")
    with pytest.raises(ConfigError, match="leave no weight"):
        _names(nn.Linear(3, 3))                           # a one-layer model is only adapters by default
