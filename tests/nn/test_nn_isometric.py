"""IsometricNet: every registered model and block type, input modes, errors, param_table."""
from __future__ import annotations

import copy

import pytest
import torch

from tessera.errors import ConfigError, ShapeError, TesseraError
from tessera.io import load_tensors, save_tensors
from tessera.nn import BLOCKS, MODELS, IsometricNet, create_model, param_table
from tessera.nn.isometric import BLOCK_INPUT_MODES


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", MODELS.names())
def test_model_shapes(name):
    net = create_model(name, num_classes=7, depth=2).eval()
    x = torch.randn(2, 1, 28, 28)
    c = net.channels
    assert net.forward_features(x).shape == (2, c, 14, 14)
    assert net.forward_embedding(x).shape == (2, net.embed_dim)
    assert net(x).shape == (2, 7)
    assert isinstance(net.blocks, torch.nn.ModuleList) and len(net.blocks) == 2


def test_model_channels_from_width_mult():
    assert create_model("isometric_small", depth=1).channels == 24
    assert create_model("isometric_large", depth=1).channels == 40
    assert create_model("isometric_small", depth=1, width_mult=0.35).channels == 16
    assert create_model("isometric_small", depth=1, width_mult=1.0).channels == 40


@pytest.mark.parametrize("mode", BLOCK_INPUT_MODES)
@pytest.mark.parametrize("block", BLOCKS.names())
def test_blocks_and_input_modes_train(block, mode):
    net = IsometricNet(5, in_chans=3, channels=8, depth=2, patch=4, block=block,
                       head_channels=(16, 32), block_input_mode=mode)
    x = torch.randn(4, 3, 16, 16)
    out = net(x)
    assert out.shape == (4, 5)
    out.logsumexp(1).mean().backward()
    missing = [k for k, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_block_kwargs_override_model_defaults():
    net = create_model("isometric_small", depth=2, block_kwargs=dict(act_layer=torch.nn.ReLU6, se_ratio=None,
                                                                     expansion=4, kernel_size=5))
    blk = net.blocks[1]
    assert isinstance(blk.act1, torch.nn.ReLU6) and isinstance(blk.se, torch.nn.Identity)
    assert blk.conv_pw.out_channels == 96 and blk.conv_dw.kernel_size == (5, 5)
    assert net(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_input_mode_concat_adds_context_parameters():
    plain = IsometricNet(5, channels=8, depth=2, head_channels=(16, 32))
    cat = IsometricNet(5, channels=8, depth=2, head_channels=(16, 32), block_input_mode="concat")
    assert cat.blocks[0].conv_pw.in_channels == 16
    assert sum(p.numel() for p in cat.parameters()) > sum(p.numel() for p in plain.parameters())


def test_channels_last_same_math():
    a = create_model("isometric_small", depth=2).double().eval()
    b = create_model("isometric_small", depth=2, channels_last=False).double().eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-12)
    assert a.forward_features(x).is_contiguous(memory_format=torch.channels_last)


def test_state_dict_roundtrip_and_deepcopy(tmp_path):
    net = create_model("isometric_small", depth=2)
    net.train()(torch.randn(8, 1, 28, 28))  # move BN running stats away from their init
    net.eval()
    x = torch.randn(2, 1, 28, 28)
    save_tensors(tmp_path / "m.safetensors", net.state_dict())
    twin = create_model("isometric_small", depth=2).eval()
    twin.load_state_dict(load_tensors(tmp_path / "m.safetensors"))
    torch.testing.assert_close(twin(x), net(x), rtol=0, atol=0)
    torch.testing.assert_close(copy.deepcopy(net)(x), net(x), rtol=0, atol=0)


def test_unknown_model_lists_choices():
    with pytest.raises(TesseraError, match="isometric_large, isometric_small"):
        create_model("resnet50")


@pytest.mark.parametrize("kwargs, err", [
    (dict(block="nope"), TesseraError),
    (dict(block_input_mode="sum"), ConfigError),
    (dict(depth=0), ConfigError),
    (dict(patch=0), ConfigError),
    (dict(head_channels=(8,)), ConfigError),
    (dict(dropout=1.0), ConfigError),
    (dict(width_mult=0), ConfigError),
])
def test_bad_model_args(kwargs, err):
    with pytest.raises(err):
        create_model("isometric_small", **kwargs)


@pytest.mark.parametrize("shape", [(2, 3, 28, 28), (2, 28, 28), (2, 1, 27, 28), (2, 1, 1, 1)])
def test_bad_input_shapes(shape):
    net = create_model("isometric_small", depth=1)
    with pytest.raises(ShapeError):
        net(torch.randn(*shape))


def test_param_table_against_paper():
    for name, paper in (("isometric_small", (1200, 20000, 37000, 256)),
                        ("isometric_large", (2000, 52000, 1.27e6, 1280))):
        net = create_model(name, depth=2, num_classes=100, in_chans=3, patch=4)  # the paper's input
        rows = {r["component"]: r for r in param_table(net)}
        assert rows["input_adapter"]["params"] == rows["input_adapter"]["paper"] == paper[0]
        blk = rows["block (with SE)"]
        assert blk["paper"] == paper[1] and abs(blk["params"] / paper[1] - 1) < 0.05
        oa = rows["output_adapter"]
        assert oa["paper"] == paper[2] and abs(oa["params"] / paper[2] - 1) < 0.03
        assert rows["logits"]["params"] == rows["logits"]["paper"] == (paper[3] + 1) * 100
        assert rows["total"]["params"] == sum(p.numel() for p in net.parameters())
    rows = param_table(create_model("isometric_small", depth=1, block="inverted_residual_nose"))
    nose = next(r for r in rows if r["component"] == "block (without SE)")
    assert nose["params"] == 8832 and nose["paper"] == 9000
    assert rows[0]["params"] == 24 * 1 * 2 * 2 + 2 * 24  # MNIST adapter: far below the RGB 1200
    with pytest.raises(ConfigError):
        param_table(torch.nn.Linear(2, 2))


@pytest.mark.slow                                     # torch.compile (inductor) takes a while on CPU
def test_torch_compile_smoke():
    net = create_model("isometric_small", depth=1).eval()
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(torch.compile(net)(x), net(x), rtol=1e-4, atol=1e-5)
