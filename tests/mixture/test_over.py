"""Mixtures over a user's own model; blocks validated when the bank is built; extra forward arguments."""
import copy
import doctest
import importlib

import pytest
import torch
from torch import nn

from tessera.errors import ConfigError, ShapeError
from tessera.mixture import MixtureNet, ModelMixture, export, one_hot_logits
from tessera.mixture.templates import flatten


@pytest.mark.parametrize("name", ["tessera.mixture.over", "tessera.mixture.templates", "tessera.mixture.exported",
                                  "tessera.patterns", "tessera.compat.components"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def _err(exc, fn, match):
    with pytest.raises(exc, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def _layer(d=8):
    return nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)


def test_mixture_blocks_that_cannot_chain_fail_in_one_line_when_built_or_first_run():
    x = torch.randn(2, 5, 8)
    mk = lambda block, **kw: MixtureNet(block, num_templates=2, depth=3, tasks=["t"], **kw)  # noqa: E731
    _err(ShapeError, lambda: mk(nn.Linear(8, 16), example=x), r"maps an input of shape \(2, 5, 8\) to \(2, 5, 16\)")
    _err(ShapeError, lambda: mk(nn.GRU(8, 8, batch_first=True), example=x), "returns a tuple, not a tensor")
    _err(ShapeError, lambda: mk(_layer(16), example=x), r"fails on an input of shape \(2, 5, 8\)")
    _err(ShapeError, lambda: mk(nn.LazyLinear(8)), "uninitialized lazy parameters")
    net = mk(nn.Linear(8, 16))                                   # no example: the first forward probes
    _err(ShapeError, lambda: net(x), "maps an input")
    assert mk(_layer(8), example=x)(x).shape == x.shape


def _masked_pair(fn):
    """Outputs for x and for x with its last (masked) position changed: equal where not masked iff the mask
    reached every block."""
    x = torch.randn(2, 5, 8)
    y = x.clone()
    y[:, -1] += 3.0
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, -1] = True
    return fn(x, mask)[:, :-1], fn(y, mask)[:, :-1], fn(x, None)[:, :-1], fn(y, None)[:, :-1]


def test_blocks_receive_extra_forward_arguments_and_export_keeps_them():
    torch.manual_seed(0)
    net = MixtureNet(_layer(), num_templates=2, depth=3, tasks=["t"]).eval()
    run = lambda x, m: net(x, src_key_padding_mask=m) if m is not None else net(x)  # noqa: E731
    a, b, c, d = _masked_pair(run)
    torch.testing.assert_close(a, b)                            # the masked position is ignored by every block
    assert not torch.allclose(c, d)
    plain = export(net)
    x, m = torch.randn(2, 5, 8), torch.tensor([[False] * 4 + [True]] * 2)
    assert torch.equal(plain(x, src_key_padding_mask=m), net(x, src_key_padding_mask=m))


class Encoder(nn.Module):
    """A user's model: embedding, encoder layers that take a padding mask, a classifier."""

    def __init__(self, d=8, depth=3):
        super().__init__()
        self.inp = nn.Linear(8, d)
        self.layers = nn.ModuleList([_layer(d) for _ in range(depth)])
        self.bn = nn.BatchNorm1d(d)
        self.fc = nn.Linear(d, 3)

    def forward(self, x, mask=None):
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h, src_key_padding_mask=mask)
        return self.fc(self.bn(h.transpose(1, 2)).transpose(1, 2))


def test_model_mixture_starts_from_the_users_blocks_and_passes_arguments():
    torch.manual_seed(0)
    model = Encoder().eval()
    original = copy.deepcopy(model)
    mm = ModelMixture(model, "layers.*", num_templates=3, tasks=["a", "b"], head="fc", example=torch.randn(2, 5, 8))
    assert mm.block_names == ["layers.0", "layers.1", "layers.2"]
    for k in range(3):                                          # template k = the user's block k
        assert torch.equal(mm.bank.weight[k], flatten(original.layers[k], mm.bank.layout))
    with torch.no_grad():
        mm.mixture["a"].copy_(one_hot_logits([0, 1, 2], 3))
    mm.eval()
    x = torch.randn(2, 5, 8)
    assert torch.equal(mm(x, task="a"), original(x))            # one-hot diag over the user's blocks = the user's model
    a, b, c, d = _masked_pair(lambda x, m: mm(x, task="b", mask=m))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(c, d)


def test_model_mixture_keeps_bn_statistics_and_heads_per_task():
    torch.manual_seed(0)
    mm = ModelMixture(Encoder(), "layers.*", num_templates=2, tasks=["a", "b"], head="fc").train()
    stats_b = mm.stats.b.clone()
    mm(torch.randn(4, 5, 8) + 2.0, task="a")
    assert not torch.equal(mm.stats.a, stats_b) and torch.equal(mm.stats.b, stats_b)
    assert mm.model.fc.heads["a"] is not mm.model.fc.heads["b"]
    plain = export(mm, "b").eval()
    assert isinstance(plain.fc, nn.Linear) and torch.equal(plain.bn.running_mean, stats_b[:8])


def test_model_mixture_bad_input_is_one_line():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.body, self.out = nn.Embedding(9, 8), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8)), nn.Linear(8, 9)
            self.out.weight = self.emb.weight

        def forward(self, x):
            return self.out(self.body(self.emb(x)))

    _err(ConfigError, lambda: ModelMixture(Encoder(), "blocks.*", num_templates=2), r"match no module .*'layers'")
    stage = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 8))
    _err(ShapeError, lambda: ModelMixture(stage, "*", num_templates=2), r"block 1 has parameter .*one architecture")
    _err(ConfigError, lambda: ModelMixture(Tied(), "body.*", num_templates=2, head="out"), "shares its weights .*emb")
    _err(ConfigError, lambda: ModelMixture(Encoder(), "layers.*", num_templates=2, head="layers.0"), "overlaps")
    _err(ConfigError, lambda: ModelMixture(Encoder(), "layers.*", num_templates=2, head="nope"), "not a module")
    _err(ConfigError, lambda: ModelMixture(Encoder(), "layers.*", num_templates=2, tasks=["a-b"]), "identifier")
    mm = ModelMixture(Tied(), "body.*", num_templates=2)
    _err(ConfigError, lambda: mm(torch.zeros(2, dtype=torch.long), task="x"), "unknown task 'x'")
    _err(ShapeError, lambda: ModelMixture(Encoder(), "layers.*", num_templates=2, example=torch.randn(2, 5, 4)),
         "fails on the example")
