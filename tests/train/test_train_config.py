"""Run configs: strict YAML, errors that name the key, the shipped MNIST config parses."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tessera.errors import ConfigError
from tessera.train import RunConfig, load_run_config
from tessera.train.config import config_diff

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
model: {name: isometric_small, kwargs: {depth: 2}}
tasks: [{name: mnist, dataset: mnist}]
train: {steps: 10, batch_size: 16, optim: {name: rmsprop, lr: 0.01}}
"""


def _write(tmp_path, text):
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_good_config(tmp_path):
    cfg = load_run_config(_write(tmp_path, GOOD))
    assert isinstance(cfg, RunConfig)
    assert cfg.train.optim.lr == 0.01 and cfg.tasks[0].metrics == ["accuracy"]


@pytest.mark.parametrize("text, overrides, key", [
    (GOOD.replace("lr: 0.01", "lrr: 0.01"), [], "train.optim.lrr"),
    (GOOD.replace("batch_size: 16", "batch_size: big"), [], "train.batch_size"),
    (GOOD, ["train.optim.name=adagrad"], "train.optim.name"),
    (GOOD, ["train.ema.decay=yes"], "train.ema.decay"),
    (GOOD, ["trian.steps=3"], "trian"),
    (GOOD.replace("dataset: mnist", "datset: mnist"), [], "tasks[0].datset"),
    (GOOD, ["train.optim.lr=-1"], "train.optim.lr"),
])
def test_config_errors_name_the_key(tmp_path, text, overrides, key):
    with pytest.raises(ConfigError) as e:
        load_run_config(_write(tmp_path, text), overrides)
    msg = str(e.value)
    assert key in msg and "\n" not in msg


def test_missing_file_and_no_tasks(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="tasks"):
        load_run_config(_write(tmp_path, "train: {steps: 3}\n"))


def test_config_diff_ignores_run_length():
    a = load_run_config(None, ["tasks=[{name: a, dataset: mnist}]", "train.steps=10"])
    b = load_run_config(None, ["tasks=[{name: a, dataset: mnist}]", "train.steps=99", "train.optim.lr=0.5",
                               "data_root=/x"])
    assert [k for k, _, _ in config_diff(a, b)] == ["train.optim.lr"]


def test_shipped_mnist_config_parses():
    cfg = load_run_config(ROOT / "configs" / "mnist-isometric.yaml")
    assert cfg.tasks[0].dataset == "mnist" and cfg.model.name == "isometric_small"
    assert cfg.train.optim.name in ("rmsprop", "rmsprop_tf") and cfg.train.ema.enabled


def test_fused_adam_takes_the_same_steps_and_is_refused_elsewhere():
    from tessera.train import build_optimizer
    from tessera.train.config import OptimConfig
    torch.manual_seed(0)
    grads = [torch.randn(4, 3, dtype=torch.float64) for _ in range(5)]
    finals = []
    for fused in (False, True):
        for name in ("adam", "adamw"):
            w = torch.nn.Parameter(torch.ones(4, 3, dtype=torch.float64))
            opt = build_optimizer([w], OptimConfig(name=name, lr=0.1, eps=1e-8, fused=fused))
            assert opt.param_groups[0]["fused"] is (True if fused else None)
            for g in grads:
                w.grad = g.clone()
                opt.step()
            finals.append(w.detach().clone())
    torch.testing.assert_close(finals[0], finals[2], rtol=1e-12, atol=1e-12)     # adam
    torch.testing.assert_close(finals[1], finals[3], rtol=1e-12, atol=1e-12)     # adamw
    assert not torch.equal(finals[0], torch.ones(4, 3, dtype=torch.float64))
    with pytest.raises(ConfigError, match="config key 'fused': only adam and adamw have a fused kernel, not sgd; set fused: false"):
        OptimConfig(name="sgd", fused=True)
