"""Several tasks of one :class:`~tessera.mixture.MixtureNet` in ONE batched forward and backward.

``net.forward_tasks({task: x})`` returns ``{task: net(x, task=task)}`` (same values, gradients and BN
statistic updates as the per-task calls, up to float rounding; dropout draws other random masks). When every input has the same shape,
the tasks run as one batched model::

    logits (T, L, K) -softmax-> (T*L, K) @ bank (K, P) -> (T, L*P)     one mix for all tasks
    vmap over T: bind task t's generated weights, BN statistics (and patches) -> body -> (T, B, D)
    heads: one per task (they may differ in classes)

BatchNorm under ``vmap`` cannot update running statistics in place, so in training mode each BN
layer runs on batch statistics and its input's mean and unbiased variance are returned from the
batched call; the running statistics of every task are then updated exactly as BN does
(``(1 - momentum) * running + momentum * batch``), in call order. Inputs of different shapes, a
``coeff`` override, or BN with ``momentum=None`` fall back to the per-task loop (same results).

:class:`BatchedTasks` is the engine method that trains all tasks of a step through one such call
(``train_tasks(..., batched=True)``).

>>> import torch
>>> from tessera.mixture import MixtureNet
>>> net = MixtureNet.from_isometric({"a": 3, "b": 5}, num_templates=2, depth=2, channels=8, patch=4,
...                                 head_channels=(8, 8), dropout=0.0).eval()
>>> xs = {"a": torch.randn(4, 1, 8, 8), "b": torch.randn(4, 1, 8, 8)}
>>> out = net.forward_tasks(xs)
>>> {t: tuple(o.shape) for t, o in out.items()}
{'a': (4, 3), 'b': (4, 5)}
>>> bool(torch.allclose(out["b"], net(xs["b"], task="b"), atol=1e-5))
True
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import torch
from torch import Tensor, nn

from ..core import bind, mix
from ..errors import ConfigError
from ..nn.isometric import isometric_body
from ..nn.norm import VmappedBatchNorm, why_not_vmappable
from ..train import Method

if TYPE_CHECKING:
    from ..train import Trainer
    from .network import MixtureNet

__all__ = ["forward_tasks", "can_batch", "BatchedTasks"]


def can_batch(net: "MixtureNet", inputs: Mapping[str, Any]) -> str | None:
    """Why ``inputs`` cannot run as one batched call (None: they can)."""
    xs = list(inputs.values())
    if len(xs) < 2:
        return "fewer than two tasks"
    if not all(isinstance(x, Tensor) for x in xs) or len({tuple(x.shape) for x in xs}) != 1:
        return "the inputs are not tensors of one shape"
    return why_not_vmappable(m for m, *_ in net._stat_slots)


def _layout(net: "MixtureNet") -> tuple[list[nn.Module], list[tuple[int, int, int]]]:
    """The BN layers with per-task statistics and, per layer, (mean offset, var offset, size) in ``stats[t]``."""
    where: dict[nn.Module, dict[str, tuple[int, int]]] = {}
    for m, attr, off, n in net._stat_slots:
        where.setdefault(m, {})[attr] = (off, n)
    return list(where), [(w["running_mean"][0], w["running_var"][0], w["running_mean"][1]) for w in where.values()]


def forward_tasks(net: "MixtureNet", inputs: Mapping[str, Tensor], **block_kwargs: Any) -> dict[str, Tensor]:
    """``{task: net(inputs[task], task=task)}``, batched over the tasks when possible (module docstring)."""
    names = [net._check_task(t) for t in inputs]
    if len(set(names)) != len(names):
        raise ConfigError(f"forward_tasks: a task appears twice in {names}; give each task once")
    if can_batch(net, inputs) is not None:
        return {t: net(x, task=t, **block_kwargs) for t, x in inputs.items()}
    active, T = net.task, len(names)
    X = torch.stack([inputs[t] for t in names])                                  # (T, B, ...)
    if not net.probed:
        net.set_task(names[0])
        net.refresh()
        try:
            net.probe(X[0], block_kwargs)
        finally:
            net.release()
            net.set_task(active)
    logits = torch.stack([net.mixture[t] for t in names])                       # (T, L, K)
    src = mix(net.bank.weight, logits.softmax(-1).reshape(-1, net.num_templates))  # (T*L, P)
    src = src.reshape(T, -1)                                                     # (T, L*P)
    stats = torch.stack([getattr(net.stats, t) for t in names])                  # (T, L*S + A)
    patches = (torch.stack([net.patches[t].reshape(-1) for t in names])          # (T, L*Pn)
               if net.patch_writer is not None else src.new_zeros(T, 0))
    layers, offsets = _layout(net)
    bn = VmappedBatchNorm(layers)

    def one(s: Tensor, st: Tensor, pt: Tensor, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        net.writer.write(s)
        if net.patch_writer is not None:
            net.patch_writer.write(pt)
        bn.bind([(st.narrow(0, mo, n), st.narrow(0, vo, n)) for mo, vo, n in offsets], bind)
        h = isometric_body(net.input_adapter, net.blocks, x, net.block_input, False, block_kwargs)  # no NHWC in vmap
        return net.output_adapter(h), bn.moments()

    counters = [(m, m.num_batches_tracked.clone()) for m in layers
                if m.training and m.num_batches_tracked is not None]
    try:
        with bn:
            emb, moments = torch.func.vmap(one, randomness="different")(src, stats, patches, X)  # (T, B, D)
    finally:
        net.release()
        net.task = active
        net._bind_stats()
    if bn.calls:
        with torch.no_grad():
            bn.update([(stats[:, mo:mo + n], stats[:, vo:vo + n]) for mo, vo, n in offsets], moments)
            for m, c in counters:               # the per-task loop counts one batch per task per call
                m.num_batches_tracked.copy_(c + T * bn.calls.count(layers.index(m)))
            for i, t in enumerate(names):
                getattr(net.stats, t).copy_(stats[i])
    return {t: net.heads[t](net.dropout(emb[i])) for i, t in enumerate(names)}


class BatchedTasks(Method):
    """Engine method: each step, every task's batch goes through ONE ``forward_tasks`` call.

    The tasks' names are the MixtureNet's task names; their losses (times ``Task.weight``) are summed
    (use ``multitask="sum"``: every task in every step). Training uses the MixtureNet's own heads, so a
    task with a ``head`` is refused; ``Task.forward`` serves evaluation only.
    """

    def training_step(self, trainer: "Trainer", step: int) -> Tensor:
        net = trainer.model
        extra = [t.name for t in trainer.tasks if t.head is not None]
        if extra or not hasattr(net, "forward_tasks"):
            raise ConfigError(f"BatchedTasks trains a MixtureNet's tasks through its own heads; "
                              + (f"tasks {extra} have a Task.head: drop it" if extra
                                 else f"the model is a {type(net).__name__}: use the default method"))
        batches: dict[str, tuple[Any, Any]] = {}
        for ti, k in trainer.active_tasks(step):
            batches[trainer.tasks[ti].name] = trainer.batch(ti, k)
        outs = net.forward_tasks({t: x for t, (x, _) in batches.items()})
        total: Tensor | None = None
        for task in trainer.tasks:
            if task.name not in batches:
                continue
            loss = task.loss_fn(outs[task.name], batches[task.name][1])
            trainer.record(task.name, loss)
            term = loss * task.weight if task.weight != 1.0 else loss
            total = term if total is None else total + term
        assert total is not None
        return total
