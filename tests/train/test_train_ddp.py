"""Data parallel: 2 gloo processes (torch.multiprocessing spawn, torchrun-style env vars)."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from tessera.train import Task, Trainer
from train_helpers import digits, tiny_config
from gloo import free_port, set_env, shutdown

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _setup(data):
    torch.manual_seed(0)
    tr, ev = data
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    cfg = tiny_config(steps=10, batch_size=32, eval_batch_size=16, ema={"enabled": True, "decay": 0.9},
                      optim={"name": "sgd", "lr": 0.1, "momentum": 0.9}, device="cpu")
    return model, [Task("d", train=tr, eval=ev, metrics=["accuracy"])], cfg


def _worker(rank: int, world: int, port: int, out: str, data) -> None:
    set_env(rank, world, port)
    torch.set_num_threads(1)
    model, tasks, cfg = _setup(data)
    tr = Trainer(model, tasks, cfg, out_dir=out)
    assert tr.world == world and tr.rank == rank
    final = tr.fit()
    sd = {k: v.tolist() for k, v in tr.net.state_dict().items()}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"tasks": final["tasks"], "state": sd}, f)
    shutdown()



def test_two_process_gloo_matches_single_process(tmp_path):
    out = str(tmp_path / "ddp")
    os.makedirs(out)
    data = digits(256, 99)  # 99 eval samples: uneven shards (50 + 49) exercise the reduction
    mp.spawn(_worker, args=(2, free_port(), out, data), nprocs=2, join=True)
    r0 = json.loads((tmp_path / "ddp" / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "ddp" / "rank1.json").read_text())
    assert r0 == r1  # every rank holds the same weights and reports the same metrics
    final = json.loads((tmp_path / "ddp" / "final.json").read_text())
    assert final["world_size"] == 2 and final["step"] == 10
    assert (tmp_path / "ddp" / "ckpt" / "state.json").is_file()
    # the averaged gradient of 2 half batches == the gradient of the whole batch
    model, tasks, cfg = _setup(data)
    single = Trainer(model, tasks, cfg)
    fs = single.fit()
    for k, v in single.net.state_dict().items():
        assert torch.allclose(v, torch.tensor(r0["state"][k], dtype=v.dtype), atol=1e-5), k
    assert fs["tasks"]["d"]["accuracy"] == pytest.approx(final["tasks"]["d"]["accuracy"])
