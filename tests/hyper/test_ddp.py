"""Under DDP every rank takes the same alignment decisions as one process with the same global batch."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from tessera.hyper import reparameterize
from tessera.io import load_tensors, save_tensors

T, GENS, STEPS = 3, 3, 3


def _build():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(T)]
    return reparameterize(nets, block=(4, 4), context=2, lam=2, p=1.0, seed=7)


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 6, generator=g), torch.randn(16, 1, generator=g)


def _train(model, muir, x, y):
    opt = torch.optim.Adam(muir.param_groups(lr=1e-2))
    hist = []
    for _ in range(GENS):
        muir.begin_generation(opt)
        for _ in range(STEPS):
            opt.zero_grad()
            sum((o - y).square().mean() for o in model([x] * T)).backward()
            opt.step()
        hist.append(muir.end_generation())
    return torch.stack(hist), muir.bank.H.detach()


def _worker(rank, world, init_file, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        muir = _build()
        torch.manual_seed(100 + rank)                  # ranks' global RNGs differ: decisions must not care
        x, y = _data()
        half = slice(rank * 8, rank * 8 + 8)
        psi, H = _train(DDP(muir), muir, x[half], y[half])
        save_tensors(os.path.join(out, f"rank{rank}.safetensors"), {"psi": psi, "H": H})
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_ddp_ranks_decide_like_a_single_process(tmp_path):
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")          # fork: no re-import, a few seconds
    r0, r1 = (load_tensors(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    muir = _build()
    x, y = _data()
    psi, H = _train(muir, muir, x, y)
    assert torch.equal(r0["psi"], r1["psi"]) and torch.equal(r0["psi"], psi)
    assert torch.equal(r0["H"], r1["H"])
    torch.testing.assert_close(r0["H"], H, rtol=1e-4, atol=1e-5)
    assert (psi != torch.arange(psi.shape[1])).any()     # the search really moved
