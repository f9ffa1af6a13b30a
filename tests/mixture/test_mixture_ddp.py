"""Template-mixture multi-task training (``train_tasks``: round robin, mixture logits at their own lr,
the clustering regularizer, EMA) under 2 gloo processes (torchrun-style env vars) equals one process:
no BatchNorm, so the averaged gradient of two half batches is the gradient of the whole batch."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tessera.mixture import ModelMixture, TaskSplit, mixture_clustering, train_tasks
from gloo import free_port, set_env, shutdown

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
TASKS = ("a", "b")


def _setup():
    torch.manual_seed(0)
    body = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.Tanh()) for _ in range(3)])
    model = nn.Sequential(nn.Linear(5, 8), body, nn.Linear(8, 3))
    mm = ModelMixture(model, "1.*", num_templates=2, tasks=list(TASKS), head="2")
    g = torch.Generator().manual_seed(1)
    data = {t: TaskSplit(torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g),
                         torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g)) for t in TASKS}
    return mm, data


def _fit(mm, data):
    return train_tasks(mm, data, steps=8, batch=16, lr=1e-2, device="cpu", ema=0.9,
                       regularizer=lambda t: mixture_clustering(mm, t, alpha=1.0))


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_env(rank, world, port)
    torch.set_num_threads(1)
    mm, data = _setup()
    res = _fit(mm, data)
    sd = {k: v.tolist() for k, v in mm.state_dict().items()}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"acc": res["acc"], "state": sd}, f)
    shutdown()



def test_mixture_training_two_gloo_processes_equal_one(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1                                     # every rank ends with the same weights and metrics
    mm, data = _setup()
    single = _fit(mm, data)
    changed = False
    for k, v in mm.state_dict().items():
        got = torch.tensor(r0["state"][k], dtype=v.dtype)
        assert torch.allclose(v, got, atol=1e-5), k
        changed |= not torch.equal(v, _setup()[0].state_dict()[k])
    assert changed                                      # training moved the weights (the check is not vacuous)
    assert single["acc"] == pytest.approx(r0["acc"])
