"""Truncated BPTT on the engine: the stream's chunks, the carried state and the stream perplexity equal
running the whole sequence at once (an LSTM carrying its state == one long call)."""
import doctest

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tessera.train.bptt as bptt
from tessera.errors import ConfigError
from tessera.train.bptt import CarriedState, TokenStream, batchify, stream_perplexity


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.rnn, self.out = nn.Embedding(11, 6), nn.LSTM(6, 5, 2), nn.Linear(5, 11)

    def forward(self, x, state=None):
        h, state = self.rnn(self.emb(x), state)
        return self.out(h).flatten(0, 1), state


def test_doctest():
    assert doctest.testmod(bptt).failed == 0


def test_chunks_tile_the_streams_and_targets_are_the_next_tokens():
    tokens = torch.arange(103)
    s = TokenStream(tokens, batch=4, bptt=7)                      # 25 rows x 4 streams; 24 targets per stream
    data = batchify(tokens, 4)
    assert data[:, 1].tolist() == list(range(25, 50))              # stream 1 is the 2nd quarter of the corpus
    xs, ys = [], []
    for k in range(s.chunks):
        (x, first), y = s[torch.arange(4 * k, 4 * k + 4)]
        assert bool(first) == (k == 0) and x.shape == y.shape
        xs.append(x), ys.append(y)
    assert torch.equal(torch.cat(xs), data[:-1]) and torch.equal(torch.cat(ys), data[1:])
    assert [x.shape[0] for x in xs] == [7, 7, 7, 3]
    (x, _), y = s[torch.tensor([6, 7])]                            # chunk 1, streams 2-3 (a rank's shard)
    assert torch.equal(x, data[7:14, 2:4]) and torch.equal(y, data[8:15, 2:4])
    with pytest.raises(ConfigError, match="one chunk"):
        s[torch.tensor([3, 4])]
    with pytest.raises(ConfigError, match="too short"):
        TokenStream(torch.arange(5), batch=4, bptt=3)


def test_carried_state_equals_one_long_forward_and_restarts_each_epoch():
    torch.manual_seed(0)
    net = LM().eval()
    tokens = torch.randint(0, 11, (203,))
    s = TokenStream(tokens, batch=4, bptt=9)
    fwd = CarriedState()
    outs = [fwd(net, s[torch.arange(4 * k, 4 * k + 4)][0]) for k in range(s.chunks)]
    data = batchify(tokens, 4)
    ref, (h, c) = net(data[:-1])
    torch.testing.assert_close(torch.cat(outs), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fwd.state[0], h, rtol=1e-5, atol=1e-6)
    assert fwd.state[0].grad_fn is None                           # detached: truncated backprop
    saved = fwd.state_dict()
    twin = CarriedState()
    twin.load_state_dict(saved)
    assert torch.equal(twin.state[1], fwd.state[1])
    again = fwd(net, s[torch.arange(4)][0])                       # chunk 0 of the next epoch: fresh state
    torch.testing.assert_close(again, outs[0])
    empty = CarriedState()
    empty.load_state_dict(CarriedState().state_dict())
    assert empty.state is None


def test_stream_perplexity_equals_the_whole_stream_cross_entropy():
    torch.manual_seed(1)
    net = LM().eval()
    tokens = torch.randint(0, 11, (301,))
    data = batchify(tokens, 3)
    with torch.no_grad():
        out, _ = net(data[:-1])
    ref = F.cross_entropy(out, data[1:].reshape(-1))
    res = stream_perplexity(net, tokens, batch=3, bptt=8)
    assert res["loss"] == pytest.approx(float(ref), rel=1e-5)
    assert res["perplexity"] == pytest.approx(float(ref.exp()), rel=1e-5)
