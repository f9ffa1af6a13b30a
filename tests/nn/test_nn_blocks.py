"""Blocks: every registered block is tested for shape, gradients, context input and copies."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from tessera.errors import ShapeError, TesseraError
from tessera.nn import BLOCKS, InvertedResidual
from tessera.nn.blocks import DropPath, create_act, make_divisible


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_shape_and_grads(name):
    blk = BLOCKS.get(name)(16)
    x = torch.randn(3, 16, 6, 6, requires_grad=True)
    y = blk(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for pname, p in blk.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_context_input(name):
    blk = BLOCKS.get(name)(8, context_chans=8)
    x, ctx = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    y = blk(x, ctx)
    assert y.shape == x.shape
    assert not torch.allclose(y, blk(x, torch.zeros_like(ctx)))


@pytest.mark.parametrize("name", BLOCKS.names())
def test_block_deepcopy_and_state_dict(name):
    blk = BLOCKS.get(name)(8).eval()
    x = torch.randn(2, 8, 4, 4)
    twin = BLOCKS.get(name)(8).eval()
    twin.load_state_dict(copy.deepcopy(blk).state_dict())
    torch.testing.assert_close(twin(x), blk(x), rtol=0, atol=0)


def test_param_counts_match_paper_table7():
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(InvertedResidual(24)) == 19380           # paper ~20000
    assert n(InvertedResidual(24, se_ratio=None)) == 8832   # ~9000
    assert n(InvertedResidual(40)) == 51500           # ~52000
    assert n(BLOCKS.get("inverted_residual_nose")(40)) == 22400  # ~22000


def test_forward_reads_conv_weights_through_modules():
    """Reparameterization writes ``<module>.weight``; the forward must use it."""
    blk = InvertedResidual(8).eval()
    x = torch.randn(2, 8, 5, 5)
    names = [k for k, _ in blk.named_parameters() if k.startswith(("conv_", "se.conv_"))]
    assert {"conv_pw.weight", "conv_dw.weight", "conv_pwl.weight", "se.conv_reduce.weight",
            "se.conv_reduce.bias", "se.conv_expand.weight", "se.conv_expand.bias"} <= set(names)
    base = blk(x)
    for k in names:
        p = dict(blk.named_parameters())[k]
        out = functional_call(blk, {k: p.detach() * 1.5 + 0.1}, (x,))
        assert not torch.allclose(out, base), k
    # plain attribute replacement (what a weight generator does) is honoured too
    w = blk.conv_pw.weight.detach().clone()
    del blk.conv_pw.weight
    blk.conv_pw.weight = torch.zeros_like(w)
    assert not torch.allclose(blk(x), base)


def test_create_act_inplace_only_where_free():
    assert create_act(nn.ReLU6).inplace and create_act(nn.ReLU).inplace
    assert not create_act(nn.Hardswish).inplace
    assert isinstance(create_act(nn.GELU), nn.GELU)


def test_drop_path_train_eval():
    dp = DropPath(0.5)
    x = torch.ones(64, 2, 2, 2)
    assert torch.equal(dp.eval()(x), x)
    y = dp.train()(x)
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    blk = InvertedResidual(8, drop_path=0.2)
    assert blk(torch.randn(4, 8, 3, 3)).shape == (4, 8, 3, 3)


@pytest.mark.parametrize("kwargs", [dict(channels=0), dict(channels=8, kernel_size=2),
                                    dict(channels=8, expansion=0), dict(channels=8, drop_path=1.0)])
def test_bad_block_args(kwargs):
    with pytest.raises(ShapeError):
        InvertedResidual(**kwargs)


def test_unknown_block_lists_choices():
    with pytest.raises(TesseraError, match="inverted_residual"):
        BLOCKS.get("nope")


def test_make_divisible():
    assert make_divisible(40 * 0.6) == 24 and make_divisible(40) == 40 and make_divisible(40 * 0.35) == 16
