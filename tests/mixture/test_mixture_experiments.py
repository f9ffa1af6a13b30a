"""Experiment helpers and the overhead benchmark at smoke size (the experiments themselves need data)."""
import json

import torch

from tessera.bench import BENCHMARKS, RunOptions
from tessera.experiments import EXPERIMENTS
from tessera.experiments.mixture_common import cached, fit
from tessera.experiments.mixture_multitask import sharing
from tessera.mixture import MixtureNet


def test_registered():
    assert {"signatures", "mixture-multitask", "mixture-transfer"} <= set(EXPERIMENTS.names())
    assert "mixture-overhead" in BENCHMARKS


def test_bench_rows(tmp_path):
    out = BENCHMARKS.get("mixture-overhead")(RunOptions(budget="quick", json=tmp_path / "b.json"), _smoke=True)
    assert len(out["rows"]) == 4 and all(r["ratio"] > 0 for r in out["rows"])
    assert json.loads((tmp_path / "b.json").read_text())["name"] == "mixture-overhead"


def test_sharing_by_pair_type():
    w = {"a-x": torch.eye(2), "b-x": torch.eye(2), "a-y": torch.eye(2).flip(0)}
    s = sharing(w)
    assert s["same_augmentation"] == [1.0, 1.0] and s["same_dataset"] == [0.0, 0.0]


def test_fit_with_trainer_and_precise_bn(tmp_path):
    torch.manual_seed(0)
    x = torch.rand(64, 1, 16, 16)
    y = (x.mean((1, 2, 3)) > x.mean()).long()
    net = MixtureNet.from_isometric({"a": 2, "b": 2}, num_templates=2, depth=2, channels=8, head_channels=(16, 16),
                                    patch=4)
    res = fit(net, {"a": (x, y, x, y), "b": (x, 1 - y, x, 1 - y)}, steps=6, batch=16, recalibrate=2)
    assert set(res["acc"]) == {"a", "b"} and not torch.equal(net.stats.a, net.stats.b)
    calls = []
    r1 = cached(tmp_path, True, "run", {"k": 1}, lambda: calls.append(1) or {"v": 1})
    r2 = cached(tmp_path, True, "run", {"k": 1}, lambda: calls.append(1) or {"v": 2})
    assert r1 == r2 == {"v": 1} and len(calls) == 1
