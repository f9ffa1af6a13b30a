"""The joint scheme under 2 gloo processes (torchrun-style env vars) equals the single-process run:
no BatchNorm, deterministic rotations (Eq. 2's all four), so the averaged gradient of the two half
batches is the gradient of the whole batch. Random rotations run too (ranks agree on the weights)."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from tessera.compat import DCC, RP, Member, RotationTask, train_joint
from tessera.compat.components import split_at
from tessera.compat.models import build
from tessera.train import TrainConfig
from gloo import free_port, set_env, shutdown

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
CLS = [str(i) for i in range(4)]


def _setup(rotation: str):
    members = []
    for i in range(2):
        torch.manual_seed(i)
        ext, head = split_at(build("resnet", num_classes=4, width=2, norm="none"), "stage2")
        g = torch.Generator().manual_seed(10 + i)
        members.append(Member(f"m{i}", ext, head, torch.rand(64, 1, 8, 8, generator=g),
                              torch.randint(0, 4, (64,), generator=g), CLS))
    torch.manual_seed(5)
    heads = [split_at(build("resnet", num_classes=4, width=2, norm="none"), "stage2")[1] for _ in range(2)]
    aux = [DCC(heads[0], [CLS, CLS]), RP(heads[1], RotationTask(rotation))]
    cfg = TrainConfig(steps=6, batch_size=16, seed=0, log_every=0, checkpoint_every=0, progress="off", device="cpu",
                      ema={"enabled": False}, optim={"name": "adam", "lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0},
                      schedule={"name": "cosine"})
    return members, aux, cfg


def _weights(members, aux):
    mods = [m.extractor for m in members] + [m.head for m in members] + list(aux)
    return {f"{i}.{k}": v.tolist() for i, m in enumerate(mods) for k, v in m.state_dict().items()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_env(rank, world, port)
    torch.set_num_threads(1)
    for rotation in ("all", "random"):
        members, aux, cfg = _setup(rotation)
        res = train_joint(members, aux, cfg, out_dir=os.path.join(out, rotation))
        with open(os.path.join(out, f"{rotation}_rank{rank}.json"), "w") as f:
            json.dump({"world": res["world_size"], "weights": _weights(members, aux)}, f)
    shutdown()



def test_joint_two_process_gloo(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rotation in ("all", "random"):  # every rank holds the same weights
        r0 = json.loads((tmp_path / f"{rotation}_rank0.json").read_text())
        r1 = json.loads((tmp_path / f"{rotation}_rank1.json").read_text())
        assert r0["world"] == 2 and r0["weights"] == r1["weights"]
    # deterministic rotations: equal to one process on the whole batch (random ones: each rank draws its own)
    r0 = json.loads((tmp_path / "all_rank0.json").read_text())
    members, aux, cfg = _setup("all")
    train_joint(members, aux, cfg)
    for k, v in _weights(members, aux).items():
        assert torch.allclose(torch.tensor(v), torch.tensor(r0["weights"][k]), atol=1e-5), k
