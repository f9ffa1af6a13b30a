"""``lstm_forward`` == ``nn.LSTM.forward`` (outputs, final states, gradients) on every supported option."""
import pytest
import torch
from torch import nn

from tessera.nn.rnn import functional_lstms, lstm_forward, why_not_functional

CASES = {
    "plain": dict(),
    "batch_first": dict(batch_first=True),
    "two_layers_bidirectional": dict(num_layers=2, bidirectional=True),
    "three_layers_no_bias_batch_first": dict(num_layers=3, bias=False, batch_first=True),
    "dropout_in_eval": dict(num_layers=2, dropout=0.5),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("state", [False, True])
def test_lstm_forward_equals_nn_lstm(name, state):
    torch.manual_seed(0)
    m = nn.LSTM(3, 4, **CASES[name]).double()
    if m.dropout:
        m.eval()
    D = m.num_layers * (2 if m.bidirectional else 1)
    x = torch.randn(2, 5, 3, dtype=torch.float64)                       # (B, S) or (S, B): both 3-d
    hx = (torch.randn(D, 2 if m.batch_first else 5, 4, dtype=torch.float64),) * 2 if state else None
    hx = (hx[0], hx[1] * -0.5) if state else None
    ref, (h, c) = m(x, hx)
    g_ref = torch.autograd.grad(ref.square().sum() + c.sum(), list(m.parameters()))
    out, (h2, c2) = lstm_forward(m, x, hx)
    g = torch.autograd.grad(out.square().sum() + c2.sum(), list(m.parameters()))
    for a, b in [(out, ref), (h2, h), (c2, c), *zip(g, g_ref)]:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_unbatched_input_and_the_context_manager():
    torch.manual_seed(0)
    net = nn.Sequential(nn.LSTM(3, 4, num_layers=2))
    x = torch.randn(6, 3)                                               # (S, in): no batch dim
    ref, (h, c) = net(x)
    with functional_lstms(net):
        assert "forward" in net[0].__dict__
        out, (h2, c2) = net(x)
    assert "forward" not in net[0].__dict__                             # restored after the block
    torch.testing.assert_close(out, ref), torch.testing.assert_close(c2, c)
    assert h2.shape == h.shape == (2, 4)


def test_training_dropout_is_applied_between_layers_only():
    torch.manual_seed(0)
    m = nn.LSTM(3, 4, num_layers=2, dropout=0.999)                      # almost every unit dropped
    x = torch.randn(5, 2, 3)
    out_eval = lstm_forward(m.eval(), x)[0]
    out_train = lstm_forward(m.train(), x)[0]
    assert not torch.allclose(out_train, out_eval)
    one = nn.LSTM(3, 4, num_layers=1, dropout=0.0).train()
    torch.testing.assert_close(lstm_forward(one, x)[0], one(x)[0])


def test_refusals_name_the_problem():
    assert why_not_functional(nn.Sequential(nn.Linear(2, 2))) is None
    assert "GRU" in why_not_functional(nn.GRU(2, 2))
    assert "proj_size" in why_not_functional(nn.LSTM(2, 4, proj_size=2))
    packed = nn.utils.rnn.pack_sequence([torch.randn(3, 2)])
    with pytest.raises(Exception, match="PackedSequence"):
        lstm_forward(nn.LSTM(2, 2), packed)
