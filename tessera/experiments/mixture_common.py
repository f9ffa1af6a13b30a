"""Shared pieces of the template-mixture experiments: digit-domain tasks, training, caching.

Training goes through :class:`tessera.train.Trainer` (round-robin over tasks, Adam with cosine
decay, EMA weights for evaluation). Mixture logits get a higher learning rate (``mixture_lr_mult``)
because a few hundred steps must move them by several units.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..io import load_json, save_json

__all__ = ["domain_tasks", "fit", "accuracy", "cached", "recalibrate_bn", "TaskData"]

TaskData = tuple[Tensor, Tensor, Tensor, Tensor]  # x_train, y_train, x_eval, y_eval


def domain_tasks(datasets: Sequence[str], kinds: Sequence[str], *, root: Any = None, split: str = "test",
                 n_eval: int = 2000, n_train: int | None = None, size: int = 28, seed: int = 0
                 ) -> dict[str, TaskData]:
    """``{"<dataset>-<kind>": (x_train, y_train, x_eval, y_eval)}`` from one split of each dataset.

    The split is permuted with ``seed``; its last ``n_eval`` images are held out for evaluation, the
    rest (at most ``n_train``) train. Every task of a dataset uses the same images under its own
    augmentation (``tessera.data.digit_domain``).
    """
    from ..data import load_images
    from ..data.domains import digit_domain

    out: dict[str, TaskData] = {}
    for d in datasets:
        x, y = load_images(d, split, root)
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(y), generator=g)
        ev, tr = perm[len(y) - n_eval:], perm[:len(y) - n_eval]
        if n_train is not None:
            tr = tr[:n_train]
        for i, k in enumerate(kinds):
            xt = digit_domain(x[tr], k, size=size, seed=seed + 2 * i)
            xe = digit_domain(x[ev], k, size=size, seed=seed + 2 * i + 1)
            out[f"{d}-{k}"] = (xt, y[tr].clone(), xe, y[ev].clone())
    return out


def accuracy(model: nn.Module, task: str | None, x: Tensor, y: Tensor, batch: int = 1000,
             coeff: Tensor | None = None) -> float:
    """Top-1 accuracy of ``model(x, task=task)`` in eval mode."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            kw = {} if task is None else {"task": task}
            if coeff is not None:
                kw["coeff"] = coeff
            out = model(x[i:i + batch].to(dev), **kw)
            correct += int((out.argmax(-1).cpu() == y[i:i + batch]).sum())
    model.train(was)
    return correct / max(1, len(y))


def fit(model: nn.Module, tasks: Mapping[str, TaskData], *, steps: int, batch: int = 64, lr: float = 2e-3,
        mixture_lr_mult: float = 10.0, weight_decay: float = 1e-5, ema: float = 0.99, seed: int = 0,
        device: str = "auto", params: Sequence[nn.Parameter] | None = None,
        regularizer: Callable[[str], Tensor] | None = None, model_takes_task: bool = True,
        recalibrate: int = 0) -> dict[str, Any]:
    """Train ``model`` on ``tasks`` (round robin) with the Trainer; returns ``{"acc": {task: acc}, ...}``.

    ``params``: train only these (transfer); default every parameter, mixture logits (names
    ``mixture.*``) at ``lr * mixture_lr_mult``. ``regularizer(task)`` is added to each task's loss.
    ``recalibrate`` > 0: afterwards re-estimate every task's BN statistics over that many training
    batches (precise BN; for short smoke runs whose running averages have not converged), then evaluate.
    """
    from ..train import OptimConfig, ScheduleConfig, Task, TrainConfig, Trainer
    from ..train.config import EmaConfig

    def make_task(name: str, d: TaskData) -> Task:
        def loss(o: Tensor, y: Tensor, _n: str = name) -> Tensor:
            ce = F.cross_entropy(o, y)
            return ce + regularizer(_n) if regularizer is not None and torch.is_grad_enabled() else ce
        fwd = (lambda m, x, _n=name: m(x, task=_n)) if model_takes_task else None
        return Task(name, train=(d[0], d[1]), eval=(d[2], d[3]), loss=loss, forward=fwd)

    if params is None:
        mix = [p for n, p in model.named_parameters() if n.startswith("mixture.") and p.requires_grad]
        rest = [p for n, p in model.named_parameters() if not n.startswith("mixture.") and p.requires_grad]
        groups: list[Any] = [{"params": rest, "weight_decay": weight_decay}]
        if mix:
            groups.append({"params": mix, "lr": lr * mixture_lr_mult, "weight_decay": 0.0})
    else:
        ids = {id(p) for p in params}
        mix = [p for n, p in model.named_parameters() if n.startswith("mixture.") and id(p) in ids]
        rest = [p for p in params if id(p) not in {id(q) for q in mix}]
        groups = [g for g in ({"params": rest, "weight_decay": 0.0},
                              {"params": mix, "lr": lr * mixture_lr_mult, "weight_decay": 0.0}) if g["params"]]
    cfg = TrainConfig(steps=steps, batch_size=batch, eval_batch_size=1000, log_every=0, checkpoint_every=0,
                      progress="off", seed=seed, device=device,
                      optim=OptimConfig(name="adam", lr=lr, weight_decay=weight_decay, eps=1e-8),
                      schedule=ScheduleConfig(name="cosine", warmup_steps=min(50, steps // 10), final_lr_frac=0.02),
                      ema=EmaConfig(enabled=ema > 0, decay=ema if ema > 0 else 0.9))
    trainer = Trainer(model, [make_task(n, d) for n, d in tasks.items()], cfg, param_groups=groups)
    final = trainer.fit()
    if trainer.ema is not None:   # keep the EMA weights for what follows (transfer, plots, collapse)
        trainer.ema.copy_to(trainer.net)
    acc = {n: m["accuracy"] for n, m in final["tasks"].items()}
    if recalibrate > 0:
        recalibrate_bn(model, {n: d[0] for n, d in tasks.items()}, batches=recalibrate, batch=batch, seed=seed)
        acc = {n: accuracy(model, n if model_takes_task else None, d[2], d[3]) for n, d in tasks.items()}
    return {"acc": acc, "train_seconds": final["train_seconds"], "samples_per_s": final["samples_per_s"]}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: Mapping[str, Tensor], *, batches: int = 10, batch: int = 64,
                   seed: int = 0) -> None:
    """Precise BN: reset each task's BN statistics and set them to the average over ``batches`` batches."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.train()
    try:
        for name, x in inputs.items():
            if hasattr(model, "set_task"):
                model.set_task(name)
            for m in bns:
                m.reset_running_stats()     # in place: the task's statistics views
                m.momentum = None           # cumulative average
            for _ in range(batches):
                idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
                model(x[idx].to(dev), **({"task": name} if hasattr(model, "set_task") else {}))
    finally:
        for m, mo in zip(bns, momenta):
            m.momentum = mo
        model.train(was)


def cached(out: Path, resume: bool, name: str, key: Mapping[str, Any], fn: Callable[[], dict[str, Any]]
           ) -> dict[str, Any]:
    """Run ``fn`` or reuse its stored result ``out/<name>-<hash(key)>.json`` (when ``resume``)."""
    h = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(out) / f"{name}-{h}.json"
    if resume and path.is_file():
        return load_json(path)["result"]
    res = fn()
    save_json(path, {"key": dict(key), "result": res})
    return res
