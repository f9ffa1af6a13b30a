"""Checkpoints are all-or-nothing; NaN states are never saved."""
from __future__ import annotations

import math

import pytest
import torch

import tessera.train.checkpoint as ckmod
from tessera.errors import CheckpointError, TrainingError
from tessera.train import Trainer
from tessera.train.checkpoint import find_checkpoint, load_checkpoint
from train_helpers import tiny_setup


def _trainer(out, **kw):
    model, tasks, cfg = tiny_setup(**kw)
    return Trainer(model, tasks, cfg, out_dir=out)


def test_checkpoint_files_and_no_pickle(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(5)
    d = tmp_path / "ckpt"
    names = sorted(p.name for p in d.iterdir())
    assert names == ["ema.safetensors", "model.safetensors", "optim.safetensors", "rng.safetensors", "state.json"]
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5 and ck.state["config"]["train"]["optim"]["name"] == "rmsprop"
    assert any(k.endswith(".square_avg") for k in ck.optim)
    assert "torch.0" in ck.rng


def test_crash_mid_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    tr = _trainer(tmp_path)
    tr.fit(5)
    before = {k: v.clone() for k, v in load_checkpoint(tmp_path).model.items()}
    tr.fit(8)  # final checkpoint at 8 is written normally
    tr2 = _trainer(tmp_path)
    tr2.load_checkpoint()
    assert tr2.step == 8
    # now crash while writing the checkpoint of step 10
    calls = {"n": 0}
    real = ckmod.atomic_write_bytes

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real(path, data)

    monkeypatch.setattr(ckmod, "atomic_write_bytes", flaky)
    with pytest.raises(OSError):
        tr2.fit(10)
    ck = load_checkpoint(tmp_path)
    assert ck.step == 8
    assert not any(p.name.startswith(".ckpt") for p in tmp_path.iterdir())  # temp dir cleaned up
    assert before.keys() == ck.model.keys()


def test_crash_between_renames_recovers_old(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(3)
    (tmp_path / "ckpt").rename(tmp_path / ".ckpt.old")  # the instant between atomic_dir's two renames
    assert find_checkpoint(tmp_path) == tmp_path / ".ckpt.old"
    tr2 = _trainer(tmp_path)
    assert tr2.load_checkpoint() == 3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, tasks, cfg = tiny_setup(checkpoint_every=5)
    base = tasks[0].loss_fn

    def loss(o, y):
        v = base(o, y)
        return v * float("nan") if tr.step == 7 and o.requires_grad else v     # step index 7 (not the preflight)

    tasks[0].loss_fn = loss
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"step 7.*lower train\.optim\.lr.*step 5"):
        tr.fit()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5
    assert all(torch.isfinite(v).all() for v in ck.model.values() if v.is_floating_point())
    assert not (tmp_path / "final.json").exists()


def test_nonfinite_weights_are_never_saved(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(4)
    with torch.no_grad():
        tr.model.fc.weight[0, 0] = math.inf
    with pytest.raises(TrainingError, match="not finite"):
        tr.save_checkpoint()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 4 and torch.isfinite(ck.model["model.fc.weight"]).all()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    tr = _trainer(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        tr.load_checkpoint()


def test_resume_with_mismatched_config_names_keys(tmp_path):
    _trainer(tmp_path).fit(3)
    model, tasks, cfg = tiny_setup()
    cfg.optim.lr = 0.5
    cfg.batch_size = 16
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"batch_size.*optim\.lr"):
        tr.load_checkpoint()
    # run-length keys may change
    model, tasks, cfg = tiny_setup(steps=60, log_every=7)
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    assert tr.load_checkpoint() == 3
