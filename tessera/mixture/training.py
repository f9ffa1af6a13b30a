"""Training a template-mixture network on several tasks, and learning a transfer interpolation,
both on the one training engine (:class:`tessera.train.Trainer`).

:func:`train_tasks` co-trains the tasks of a :class:`~tessera.mixture.MixtureNet` (or any model whose
``forward`` takes ``task=``) round robin: each step one task's minibatch through its own mixture
weights, BN statistics and head. Mixture logits (``mixture.*``) get their own learning rate
(``mixture_lr_mult`` times the rest), an optional regularizer (e.g. the clustering regularizer of
paper 002 §3.2) is added to each task's loss, and evaluation uses the EMA weights, which are kept.

>>> import torch
>>> from tessera.mixture import MixtureNet, train_tasks, TaskSplit
>>> g = torch.Generator().manual_seed(0)
>>> data = {t: TaskSplit(torch.rand(64, 1, 8, 8, generator=g), torch.arange(64) % 2,
...                      torch.rand(32, 1, 8, 8, generator=g), torch.arange(32) % 2) for t in ("a", "b")}
>>> net = MixtureNet.from_isometric({"a": 2, "b": 2}, num_templates=2, depth=2, channels=8, patch=4,
...                                 head_channels=(8, 8))
>>> res = train_tasks(net, data, steps=4, batch=16)
>>> sorted(res["acc"])
['a', 'b']
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn.norm import reestimate_bn
from ..train import Method, Optim, Task, Trainer, TrainConfig
from ..train.config import EmaConfig, OptimConfig, ScheduleConfig
from .batched import BatchedTasks

__all__ = ["TaskSplit", "train_tasks", "learn_interpolation", "accuracy", "evaluate_split"]


class TaskSplit(NamedTuple):
    """One task's training and held-out evaluation tensors."""

    x_train: Tensor
    y_train: Tensor
    x_eval: Tensor
    y_eval: Tensor


def _groups(model: nn.Module, params: Sequence[nn.Parameter] | None, lr: float, mult: float,
            weight_decay: float) -> list[dict[str, Any]]:
    """Mixture logits (``mixture.*``) at ``lr * mult`` without decay; the rest at ``lr``."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is not None:
        keep = {id(p) for p in params}
        named = [(n, p) for n, p in named if id(p) in keep]
        weight_decay = 0.0
    mix = [p for n, p in named if n.startswith("mixture.")]
    rest = [p for n, p in named if not n.startswith("mixture.")]
    groups = [{"params": rest, "weight_decay": weight_decay},
              {"params": mix, "lr": lr * mult, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def train_tasks(model: nn.Module, tasks: Mapping[str, TaskSplit], *, steps: int, batch: int = 64,
                lr: float = 2e-3, mixture_lr_mult: float = 10.0, weight_decay: float = 1e-5, ema: float = 0.99,
                seed: int = 0, device: str = "auto", params: Sequence[nn.Parameter] | None = None,
                regularizer: Callable[[str], Tensor] | None = None, model_takes_task: bool = True,
                recalibrate: int = 0, out_dir: str | Path | None = None, checkpoint_every: int = 500,
                score_train: int = 0, batched: bool = False) -> dict[str, Any]:
    """Co-train ``tasks`` round robin on the engine; returns ``{"acc": {task: accuracy}, ...}``.

    ``batched=True``: every step trains ALL tasks, one batch each, through one batched call
    (:meth:`MixtureNet.forward_tasks`, the engine method :class:`~tessera.mixture.batched.BatchedTasks`;
    losses summed), instead of one task per step; ``steps`` then counts joint steps.

    Adam with a 10% (at most 50-step) warmup and cosine decay to 2% of ``lr``; EMA weights (decay
    ``ema``, 0: off) are evaluated and copied into ``model`` at the end. ``params``: train only these
    (transfer; no weight decay). ``regularizer(task)`` is added to that task's training loss.
    ``recalibrate`` > 0: afterwards re-estimate each task's BN statistics over that many training
    batches (precise BN, :func:`tessera.nn.norm.reestimate_bn`; for short runs whose running averages
    have not converged), then evaluate again. ``out_dir``: keep checkpoints there every
    ``checkpoint_every`` steps and resume from them. ``score_train`` > 0: also score the final model
    on the first that many training samples of each task (``train_acc``, ``train_loss``: how well the
    training data are fitted). ``loss``: each task's held-out cross-entropy.
    """
    if steps < 1:
        raise ConfigError(f"train_tasks: steps must be >= 1, got {steps}")
    if batched and not (model_takes_task and hasattr(model, "forward_tasks")):
        raise ConfigError(f"train_tasks(batched=True) needs a model with forward_tasks (a MixtureNet); "
                          f"{type(model).__name__} has none: use batched=False")

    def make_task(name: str, d: TaskSplit) -> Task:
        def loss(o: Tensor, y: Tensor, _n: str = name) -> Tensor:
            ce = F.cross_entropy(o, y)
            return ce + regularizer(_n) if regularizer is not None and torch.is_grad_enabled() else ce
        fwd = (lambda m, x, _n=name: m(x, task=_n)) if model_takes_task else None
        return Task(name, train=(d[0], d[1]), eval=(d[2], d[3]), loss=loss, forward=fwd)

    cfg = TrainConfig(steps=steps, batch_size=batch, eval_batch_size=1000, log_every=0,
                      checkpoint_every=checkpoint_every if out_dir is not None else 0, progress="off", seed=seed,
                      device=device, multitask="sum" if batched else "round_robin",
                      optim=OptimConfig(name="adam", lr=lr, weight_decay=weight_decay, eps=1e-8),
                      schedule=ScheduleConfig(name="cosine", warmup_steps=min(50, steps // 10), final_lr_frac=0.02),
                      ema=EmaConfig(enabled=ema > 0, decay=ema if ema > 0 else 0.9))
    trainer = Trainer(model, [make_task(n, d) for n, d in tasks.items()], cfg, out_dir=out_dir,
                      param_groups=_groups(model, params, lr, mixture_lr_mult, weight_decay),
                      method=BatchedTasks() if batched else None)
    final = trainer.fit(resume=out_dir is not None)
    if trainer.ema is not None:   # keep the EMA weights for what follows (transfer, plots, export)
        trainer.ema.copy_to(trainer.net)
    acc = {n: m["accuracy"] for n, m in final["tasks"].items()}
    loss = {n: m["loss"] for n, m in final["tasks"].items()}
    if recalibrate > 0:
        g = torch.Generator().manual_seed(seed)
        dev = trainer.device
        for name, d in tasks.items():
            idx = [torch.randint(0, len(d[0]), (min(batch, len(d[0])),), generator=g) for _ in range(recalibrate)]
            fwd = (lambda x, _n=name: model(x, task=_n)) if model_takes_task else model
            reestimate_bn(model, (d[0][i].to(dev) for i in idx), forward=fwd)
        scores = {n: evaluate_split(model, n if model_takes_task else None, d[2], d[3]) for n, d in tasks.items()}
        acc = {n: s["accuracy"] for n, s in scores.items()}
        loss = {n: s["loss"] for n, s in scores.items()}
    out = {"acc": acc, "loss": loss, "train_seconds": final["train_seconds"], "samples_per_s": final["samples_per_s"]}
    if score_train > 0:
        tr = {n: evaluate_split(model, n if model_takes_task else None, d[0][:score_train], d[1][:score_train])
              for n, d in tasks.items()}
        out["train_acc"] = {n: s["accuracy"] for n, s in tr.items()}
        out["train_loss"] = {n: s["loss"] for n, s in tr.items()}
    return out


def accuracy(model: nn.Module, task: str | None, x: Tensor, y: Tensor, batch: int = 1000,
             coeff: Tensor | None = None) -> float:
    """Top-1 accuracy of ``model(x, task=task)`` in eval mode (``coeff`` overrides mixture weights)."""
    return evaluate_split(model, task, x, y, batch, coeff)["accuracy"]


@torch.no_grad()
def evaluate_split(model: nn.Module, task: str | None, x: Tensor, y: Tensor, batch: int = 1000,
                   coeff: Tensor | None = None) -> dict[str, float]:
    """``{"accuracy", "loss"}`` (top-1, mean cross-entropy) of ``model(x, task=task)`` in eval mode.

    >>> m = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = m.weight.copy_(torch.eye(2)), m.bias.zero_()
    >>> evaluate_split(m, None, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1]))["accuracy"]
    0.5
    """
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    correct, ce = 0, 0.0
    try:
        for i in range(0, len(y), batch):
            kw: dict[str, Any] = {} if task is None else {"task": task}
            if coeff is not None:
                kw["coeff"] = coeff
            out = model(x[i:i + batch].to(dev), **kw).float().cpu()
            yb = y[i:i + batch]
            correct += int((out.argmax(-1) == yb).sum())
            ce += float(F.cross_entropy(out, yb, reduction="sum"))
    finally:
        model.train(was)
    n = max(1, len(y))
    return {"accuracy": correct / n, "loss": ce / n}


class _Interpolation(Method):
    """Learns ``c = softmax(gamma)`` over fixed source mixture weights (and optionally the task's head)."""

    def __init__(self, net: nn.Module, task: str, probs: Tensor, gamma0: Tensor, head: nn.Module | None, lr: float):
        self.net, self.task, self.probs, self.head, self.lr = net, task, probs, head, lr
        self.holder = nn.Module()
        self.holder.gamma = nn.Parameter(gamma0.clone())

    def modules(self) -> dict[str, nn.Module]:
        return {"interpolation": self.holder}

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        params = [self.holder.gamma] + (list(self.head.parameters()) if self.head is not None else [])
        return {"main": Optim(params, config=OptimConfig(name="adam", lr=self.lr, weight_decay=0.0, eps=1e-8))}

    def coeff(self) -> Tensor:
        return torch.einsum("v,vlk->lk", self.holder.gamma.softmax(0), self.probs)   # (V,) x (V, L, K) -> (L, K)

    def training_step(self, trainer: Trainer, step: int) -> Tensor:
        x, y = trainer.batch(0)
        loss = F.cross_entropy(self.net(x, task=self.task, coeff=self.coeff()), y)
        trainer.record(self.task, loss)
        return loss


def learn_interpolation(model: nn.Module, task: str, sources: Sequence[str], x: Tensor, y: Tensor, *,
                        steps: int = 100, lr: float = 0.1, batch_size: int = 64, train_head: bool = True,
                        init: Mapping[str, float] | None = None, seed: int = 0,
                        out_dir: str | Path | None = None) -> dict[str, float]:
    """Learn ``c = softmax(gamma)`` over ``sources`` on the new task's data (App. C, Eq. 1); set ``task``'s
    mixture weights to ``sum_v c_v softmax(xi_v)``.

    Only gamma (and with ``train_head`` the task's head, which must exist) are trained, with Adam at a
    constant ``lr``; templates, adapters and the sources are untouched (the task's BN statistics see
    the new data, as in training). Returns the learned coefficients.
    """
    from .transfer import _probs_to_logits
    model._check_task(task)
    srcs = [model._check_task(s) for s in sources]
    probs = torch.stack([model.coefficients(s).detach() for s in srcs])              # (V, L, K)
    g0 = (torch.tensor([float(init[s]) for s in srcs]).clamp_min(1e-6).log() if init else torch.zeros(len(srcs)))
    method = _Interpolation(model, task, probs, g0.to(probs.device, probs.dtype),
                            model.heads[task] if train_head else None, lr)
    cfg = TrainConfig(steps=steps, batch_size=min(batch_size, len(y)), log_every=0, progress="off", seed=seed,
                      checkpoint_every=0, device=str(probs.device), schedule=ScheduleConfig(name="constant"),
                      ema=EmaConfig(enabled=False))
    Trainer(model, [Task(task, train=(x, y))], cfg, out_dir=out_dir, method=method).fit(resume=out_dir is not None)
    c = method.holder.gamma.detach().softmax(0)
    with torch.no_grad():
        model.mixture[task].copy_(_probs_to_logits(torch.einsum("v,vlk->lk", c, probs)))
    return {s: float(v) for s, v in zip(srcs, c)}
