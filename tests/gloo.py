"""Helpers of the 2-process gloo tests (torchrun-style env vars, torch.multiprocessing workers)."""
from __future__ import annotations

import os
import socket

import torch


def free_port() -> int:
    """A TCP port free on localhost now (the workers' MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_env(rank: int, world: int, port: int) -> None:
    """The environment ``torchrun`` would give worker ``rank``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))


def shutdown() -> None:
    """Leave the process group together: without the barrier the rank hosting the store may exit while the
    other still tears down, which aborts it ("terminate called without an active exception")."""
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
