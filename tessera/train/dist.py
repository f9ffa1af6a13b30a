"""torch.distributed helpers: init from ``torchrun`` env vars, rank/world, barrier, reductions.

Everything degrades to a no-op in a single process, so library code calls these unconditionally.
Backend: NCCL when the device is CUDA, gloo otherwise (CPU, MPS).
"""
from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["is_dist", "rank", "world_size", "is_main", "init_from_env", "barrier", "all_reduce_sum",
           "all_gather_cat", "broadcast_module", "select_device", "local_rank", "destroy"]


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def select_device(name: str | torch.device = "auto") -> torch.device:
    """``auto``: cuda (this rank's local GPU) > mps > cpu; otherwise the named device, which must exist.

    Raises :class:`~tessera.errors.ConfigError` for an unknown name or a device this machine lacks.

    >>> select_device("cpu")
    device(type='cpu')
    >>> select_device("tpu9")
    Traceback (most recent call last):
    ...
    tessera.errors.ConfigError: unknown device 'tpu9'; use auto, cpu, cuda, cuda:N or mps
    """
    if str(name) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unknown device {str(name)!r}; use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {str(name)!r}: this machine has no usable CUDA GPU "
                              "(torch.cuda.is_available() is False); use cpu or auto")
        n = torch.cuda.device_count()
        if dev.index is None:
            dev = torch.device("cuda", local_rank() % n)
        elif dev.index >= n:
            raise ConfigError(f"device {str(name)!r}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}; "
                              "pick one of those or use auto")
    if dev.type == "mps" and not _mps_available():
        raise ConfigError(f"device {str(name)!r}: Apple MPS is not available here; use cpu or auto")
    return dev


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group described by torchrun's env vars (``WORLD_SIZE`` > 1). Idempotent.

    Returns True when running distributed.
    """
    if is_dist():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    return True


def destroy() -> None:
    if is_dist():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (no-op in one process); returns ``t``."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (first dims may differ between ranks) from all ranks in rank order."""
    if not is_dist():
        return t
    n = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    m = int(max(s.item() for s in sizes))
    pad = t.new_zeros((m - t.shape[0],) + tuple(t.shape[1:]))
    buf = [t.new_empty((m,) + tuple(t.shape[1:])) for _ in range(world_size())]
    dist.all_gather(buf, torch.cat([t, pad]).contiguous())
    return torch.cat([b[: int(s.item())] for b, s in zip(buf, sizes)])


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of ``module`` from rank ``src`` (as DDP does at start)."""
    if not is_dist():
        return
    for t in module.state_dict(keep_vars=False).values():
        dist.broadcast(t, src)


def all_reduce_grads(params: Sequence[torch.nn.Parameter], extra: torch.Tensor | None = None) -> torch.Tensor | None:
    """Average gradients over ranks in one flat collective; ``extra`` (a 1-d tensor) is summed along.

    Parameters whose ``.grad`` is None are skipped; every rank must agree on which ones those are
    (they do: all ranks train the same tasks each step). Returns the summed ``extra``.
    """
    if not is_dist():
        return extra
    grads = [p.grad for p in params if p.grad is not None]
    parts = [g.reshape(-1) for g in grads]
    if extra is not None:
        parts.append(extra.to(device=grads[0].device if grads else extra.device, dtype=grads[0].dtype if grads else extra.dtype))
    if not parts:
        return extra
    flat = torch.cat(parts)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    w = world_size()
    off = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[off:off + n].view_as(g)).div_(w)
        off += n
    return flat[off:].to(extra.dtype) if extra is not None else None
