"""Evaluation of a task's metrics on its eval data, sharded over ranks under ``torchrun``.

Mean metrics are summed per shard in float64 and reduced; global metrics (AUC) gather every rank's
outputs first, so both are exact under data parallelism. A task with its own ``evaluate`` function
(e.g. a language model that carries its hidden state through the test stream) runs it on every rank.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import dist
from .task import Task

__all__ = ["evaluate_task", "to_device"]


def to_device(x: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples / lists / dicts) to ``device``."""
    if torch.is_tensor(x):
        return x.to(device, non_blocking=True)
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(v, device) for v in x)
    if isinstance(x, dict):
        return {k: to_device(v, device) for k, v in x.items()}
    return x


@torch.no_grad()
def evaluate_task(task: Task, model: nn.Module, device: torch.device, batch_size: int) -> dict[str, float]:
    """``{"loss": ..., metric: ...}`` of ``task`` on its eval data (this process's shard, reduced)."""
    if task.evaluate is not None:
        return {k: float(v) for k, v in task.evaluate(model).items()}
    data = task.eval_data
    world, rank = dist.world_size(), dist.rank()
    n = len(data)
    shard = world > 1 and n >= world                    # tiny sets: every rank evaluates all of it
    per = -(-n // world) if shard else n
    r = rank if shard else 0
    lo, hi = min(n, r * per), min(n, (r + 1) * per)
    mean_ms = [m for m in task.metric_objs if m.kind == "mean"]
    glob_ms = [m for m in task.metric_objs if m.kind != "mean"]
    acc = torch.zeros(2 + 2 * len(mean_ms), dtype=torch.float64)
    outs, ys = [], []
    for i in range(lo, hi, batch_size):
        x, y = data[torch.arange(i, min(hi, i + batch_size))]
        x, y = to_device(x, device), to_device(y, device)
        o = task.outputs(model, x)
        nb = len(y)
        acc[0] += float(task.loss_fn(o, y)) * nb
        acc[1] += nb
        for j, m in enumerate(mean_ms):
            v = m.fn(o, y)
            acc[2 + 2 * j] += float(v.sum())
            acc[3 + 2 * j] += v.numel()
        if glob_ms:
            outs.append(o.float().cpu())
            ys.append(y.cpu())
    comm = device if device.type == "cuda" else torch.device("cpu")
    if shard:
        acc = dist.all_reduce_sum(acc.to(comm)).cpu()
    res = {"loss": float(acc[0] / max(acc[1], 1))}
    for j, m in enumerate(mean_ms):
        v = float(acc[2 + 2 * j] / max(acc[3 + 2 * j], 1))
        res[m.name] = m.finalize(v) if m.finalize else v
    if glob_ms:
        o_all, y_all = torch.cat(outs), torch.cat(ys)      # every rank has >= 1 sample when sharded
        if shard:
            o_all = dist.all_gather_cat(o_all.to(comm)).cpu()
            y_all = dist.all_gather_cat(y_all.to(comm)).cpu()
        for m in glob_ms:
            v = float(m.fn(o_all, y_all))
            res[m.name] = m.finalize(v) if m.finalize else v
    return res
