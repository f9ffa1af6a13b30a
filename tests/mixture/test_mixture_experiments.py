"""Experiment helpers and the overhead benchmark at smoke size (the experiments themselves need data)."""
import json

import pytest
import torch

from tessera.bench import BENCHMARKS, RunOptions
from tessera.experiments import EXPERIMENTS
from tessera.experiments.mixture_multitask import sharing
from tessera.mixture import MixtureNet, TaskSplit, train_tasks


def test_registered():
    assert {"signatures", "mixture-multitask", "mixture-transfer"} <= set(EXPERIMENTS.names())
    assert "mixture-overhead" in BENCHMARKS


def test_bench_rows(tmp_path):
    out = BENCHMARKS.get("mixture-overhead")(RunOptions(budget="quick", json=tmp_path / "b.json"), _smoke=True)
    assert len(out["rows"]) == 6 and all(r["ratio"] > 0 for r in out["rows"])
    assert [r["setting"].split(",")[1] for r in out["rows"][4:6]] == [" isometric conv", " residual MLP d=8"]
    assert json.loads((tmp_path / "b.json").read_text())["name"] == "mixture-overhead"


def test_sharing_by_pair_type():
    w = {"a-x": torch.eye(2), "b-x": torch.eye(2), "a-y": torch.eye(2).flip(0)}
    s = sharing(w)
    assert s["same_augmentation"] == [1.0, 1.0] and s["same_dataset"] == [0.0, 0.0]


def _net():
    torch.manual_seed(0)
    return MixtureNet.from_isometric({"a": 2, "b": 2}, num_templates=2, depth=2, channels=8, head_channels=(16, 16),
                                     patch=4)


def test_train_tasks_precise_bn_and_resume(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16)
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    data = {"a": TaskSplit(x, y, x, y), "b": TaskSplit(x, 1 - y, x, 1 - y)}
    net = _net()
    res = train_tasks(net, data, steps=6, batch=16, recalibrate=2)
    assert set(res["acc"]) == {"a", "b"} and not torch.equal(net.stats.a, net.stats.b)
    # checkpointed every 2 steps into out_dir; a run stopped at step 4 and resumed equals a straight run
    straight = _net()
    ra = train_tasks(straight, data, steps=6, batch=16, out_dir=tmp_path / "a", checkpoint_every=2)
    part = _net()
    with pytest.raises(RuntimeError, match="stop"):
        train_tasks(part, data, steps=6, batch=16, out_dir=tmp_path / "b", checkpoint_every=2,
                    regularizer=_stop_after(5))          # raises in the 6th step, after the step-4 checkpoint
    resumed = _net()
    counted = _stop_after(100)
    rb = train_tasks(resumed, data, steps=6, batch=16, out_dir=tmp_path / "b", checkpoint_every=2,
                     regularizer=counted)
    assert counted.calls["n"] == 2                          # only steps 4 and 5 ran again
    assert ra["acc"] == rb["acc"]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _stop_after(n):
    calls = {"n": 0}

    def reg(task):
        calls["n"] += 1
        if calls["n"] > n:
            raise RuntimeError("stop (simulated kill)")
        return torch.zeros(())
    reg.calls = calls
    return reg
