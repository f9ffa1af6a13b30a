"""EMA math, LR schedules, metrics, multi-task runs, hooks."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from tessera.train import EMA, Task, Trainer, lr_factor
from tessera.train.config import ScheduleConfig
from tessera.train.task import METRICS, roc_auc
from train_helpers import TinyNet, digits, tiny_config


def test_ema_math():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    ema = EMA(m, decay=0.9, warmup=True)
    ref = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in m.state_dict().items()}
    for n in range(5):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
            m[1].running_mean.add_(1.0)
            m[1].num_batches_tracked += 1
        d = min(0.9, (1 + n) / (10 + n))
        for k, v in m.state_dict().items():
            if v.is_floating_point():
                ref[k] = d * ref[k] + (1 - d) * v.double()
            else:
                ref[k] = v.clone()
        ema.update(m)
    for k, v in ema.shadow.items():
        if v.is_floating_point():
            assert torch.allclose(v.double(), ref[k], atol=1e-6), k
        else:
            assert torch.equal(v, ref[k]), k
    live = {k: v.clone() for k, v in m.state_dict().items()}
    with ema.swapped_into(m):
        assert torch.equal(m[0].weight, ema.shadow["0.weight"])
    for k, v in m.state_dict().items():
        assert torch.equal(v, live[k])


def test_ema_without_warmup_is_plain_decay():
    m = nn.Linear(1, 1, bias=False)
    m.weight.data.fill_(0.0)
    ema = EMA(m, decay=0.99, warmup=False)
    m.weight.data.fill_(1.0)
    for _ in range(10):
        ema.update(m)
    assert ema.shadow["weight"].item() == pytest.approx(1 - 0.99 ** 10, abs=1e-6)


@pytest.mark.parametrize("name", ["constant", "cosine", "linear", "step", "exponential"])
def test_schedules(name):
    cfg = ScheduleConfig(name=name, warmup_steps=4, step_size=10, gamma=0.5, final_lr_frac=0.1)
    f = [lr_factor(cfg, s, 100) for s in range(100)]
    assert f[:4] == [0.25, 0.5, 0.75, 1.0]
    assert f[4] == pytest.approx(1.0)
    assert all(0 < v <= 1.0 + 1e-12 for v in f)
    if name in ("cosine", "linear"):
        assert f[-1] == pytest.approx(0.1, abs=1e-3)
        assert all(a >= b - 1e-12 for a, b in zip(f[4:], f[5:]))


def test_metrics():
    o = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    y = torch.tensor([0, 1, 1])
    assert METRICS.get("accuracy").fn(o, y).mean().item() == pytest.approx(2 / 3)
    assert roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])).item() == 0.75
    assert roc_auc(torch.tensor([0.5, 0.5]), torch.tensor([0, 1])).item() == 0.5
    rmse = METRICS.get("rmse")
    assert rmse.finalize(rmse.fn(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 0.0])).mean().item()) == pytest.approx(math.sqrt(5))


def test_roc_auc_matches_the_pairwise_definition_with_ties():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randint(0, 5, (200,), generator=g).float(), torch.randint(0, 2, (200,), generator=g).float()
    pos, neg = s[y == 1], s[y == 0]
    ref = ((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean()
    assert roc_auc(s, y).item() == pytest.approx(float(ref))


class Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())

    def forward(self, x):
        return self.body(x)


@pytest.mark.parametrize("mode", ["round_robin", "sum"])
def test_multitask_per_task_metrics_and_heads(tmp_path, mode):
    torch.manual_seed(0)
    (x, y), (xe, ye) = digits(320, 160)
    parity = Task("parity", train=(x, y % 2), eval=(xe, ye % 2), head=nn.Linear(32, 2), metrics=["accuracy", "auc"])
    digit = Task("digit", train=(x, y), eval=(xe, ye), head=nn.Linear(32, 10), batch_size=64)
    big = Task("is_big", train=(x, (y >= 5).float()), eval=(xe, (ye >= 5).float()), head=nn.Linear(32, 1),
               loss="bce", metrics=["auc", "mse"], weight=0.5)
    cfg = tiny_config(steps=60, multitask=mode, eval_every=20, optim={"name": "adam", "lr": 1e-2},
                      ema={"decay": 0.9})
    seen = []
    tr = Trainer(Trunk(), [parity, digit, big], cfg, out_dir=tmp_path,
                 callbacks=[lambda t, step, logs: seen.append(step)])
    final = tr.fit()
    assert set(final["tasks"]) == {"parity", "digit", "is_big"}
    assert set(final["tasks"]["parity"]) == {"loss", "accuracy", "auc"}
    assert final["tasks"]["digit"]["accuracy"] > 0.3, final
    assert 0.0 <= final["tasks"]["is_big"]["auc"] <= 1.0 and final["tasks"]["parity"]["auc"] > 0.8, final
    assert seen == list(range(1, 61))
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["task"] for r in lines if r["kind"] == "train"} == {"parity", "digit", "is_big"}
    assert sorted({r["step"] for r in lines if r["kind"] == "eval"}) == [20, 40, 60]
    assert any(k.startswith("heads.digit.") for k in tr.net.state_dict())
    if mode == "round_robin":
        assert tr.active_tasks(4) == [(1, 1)]


def test_custom_forward_and_stop_hook():
    torch.manual_seed(0)
    (x, y), (xe, ye) = digits()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.trunk = Trunk()
            self.heads = nn.ModuleDict({"a": nn.Linear(32, 10), "b": nn.Linear(32, 2)})

    net = TwoHeads()
    ta = Task("a", train=(x, y), eval=(xe, ye), forward=lambda m, x: m.heads["a"](m.trunk(x)))
    tb = Task("b", train=(x, y % 2), eval=(xe, ye % 2), forward=lambda m, x: m.heads["b"](m.trunk(x)))

    class Stop:
        def on_step_end(self, trainer, step, logs):
            if step == 7:
                trainer.should_stop = True

    tr = Trainer(net, [ta, tb], tiny_config(steps=50), callbacks=[Stop()])
    final = tr.fit()
    assert final["step"] == 7 and set(final["tasks"]) == {"a", "b"}


def test_samples_per_s_and_final_json(tmp_path):
    torch.manual_seed(0)
    tr, ev = digits()
    t = Trainer(TinyNet(), [Task("d", train=tr, eval=ev)], tiny_config(steps=6), out_dir=tmp_path)
    final = t.fit()
    on_disk = json.loads((tmp_path / "final.json").read_text())
    assert on_disk["tasks"] == final["tasks"] and on_disk["step"] == 6
    assert on_disk["samples_per_s"] > 0 and on_disk["config"]["train"]["steps"] == 6


def test_run_in_chunks_equals_fit(tmp_path):
    """Algorithms that alternate training with their own work call run() repeatedly."""
    torch.manual_seed(0)
    tr, ev = digits()
    a = Trainer(TinyNet(), [Task("d", train=tr, eval=ev)], tiny_config(steps=12))
    fa = a.fit()
    torch.manual_seed(0)
    b = Trainer(TinyNet(), [Task("d", train=tr, eval=ev)], tiny_config(steps=12))
    for until in (4, 8, 12):
        assert b.run(until) == until
    assert b.evaluate() == fa["tasks"]


def test_sequential_batches_are_the_samples_in_order_and_never_views():
    from tessera.train import Task, Trainer, TrainConfig
    x, y = torch.randn(12, 3), torch.randn(12, 1)
    x0, y0 = x.clone(), y.clone()
    cfg = TrainConfig(steps=1, batch_size=4, progress="off", log_every=0, checkpoint_every=0)
    tr = Trainer(torch.nn.Linear(3, 1), [Task("s", train=(x, y), loss="mse", order="sequential")], cfg)
    for k in range(5):                                   # wraps after 3 batches
        bx, by = tr.batch(0, k)
        j = k % 3
        assert torch.equal(bx, x[j * 4:(j + 1) * 4]) and torch.equal(by, y[j * 4:(j + 1) * 4])
        bx.add_(1.0)                                      # a model writing into its input in place
    assert torch.equal(x, x0) and torch.equal(y, y0)      # leaves the training data as it was
