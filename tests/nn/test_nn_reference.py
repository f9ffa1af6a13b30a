"""tessera's IsometricNet equals the plain-PyTorch reference with the same weights (minGPT style)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from tessera.nn import create_model
from tessera.nn.reference import load_from_tessera, plain_isometric


def _pair(depth=2, se=True, dropout=0.2, **kw):
    torch.manual_seed(0)
    block = "inverted_residual" if se else "inverted_residual_nose"
    net = create_model("isometric_small", depth=depth, block=block, dropout=dropout, **kw).double()
    for m in net.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    ref = load_from_tessera(plain_isometric(10, depth=depth, se=se, dropout=dropout).double(), net)
    return net, ref


@pytest.mark.parametrize("se", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
def test_equal_to_reference_eval(se, channels_last):
    net, ref = _pair(se=se, channels_last=channels_last)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(net.eval()(x), ref.eval()(x), rtol=1e-12, atol=1e-12)


def test_equal_to_reference_train_forward_and_grads():
    net, ref = _pair(dropout=0.0)
    x = torch.randn(6, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    F.cross_entropy(net.train()(x), y).backward()
    F.cross_entropy(ref.train()(x), y).backward()
    for (k, a), b in zip(net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12, msg=k)
    for a, b in zip(net.buffers(), ref.buffers()):  # BN running statistics updated identically
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_float32_close():
    net, ref = _pair()
    net, ref = net.float().eval(), ref.float().eval()
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)


def test_load_from_tessera_rejects_other_architectures():
    net = create_model("isometric_small", depth=2)
    with pytest.raises(ValueError):
        load_from_tessera(plain_isometric(10, depth=3), net)
    with pytest.raises(ValueError):
        load_from_tessera(plain_isometric(10, depth=2, channels=32), net)


def test_bench_smoke(tmp_path, capsys):
    from tessera.bench import RunOptions
    from tessera.bench.isometric import run
    out = run(RunOptions(budget="quick", json=tmp_path / "b.json", device="cpu"), _smoke=True)
    assert [r["metric"] for r in out["rows"]] == ["train_step_s", "infer_s", "train_step_s"]
    for r in out["rows"]:
        assert r["ratio"] == pytest.approx(r["candidate_s"] / r["baseline_s"])
        assert r["candidate_samples_per_s"] > 0 and r["baseline_samples_per_s"] > 0
    assert json.loads((tmp_path / "b.json").read_text())["name"] == "isometric-throughput"
    assert "isometric-throughput" in capsys.readouterr().out
