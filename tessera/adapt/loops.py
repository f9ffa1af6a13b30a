"""Short training loops around the losses and steps: source training, adaptation, evaluation.

Every loop works on any :class:`~tessera.adapt.models.DAModel`; the adaptation loops build an
optimizer over ``model.target_parameters(target)`` only and run inside ``model.adapt_mode(target)``,
so the shared parts (and every source domain) stay bit-identical.

Sources are fixed while a target adapts, so their features / embeddings are computed once (eval
mode, no grad) into a *pool* that every step samples from.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .adversarial import Discriminator, adda_step
from .domains import BatchStream, Domain, check_domains, require_labeled, require_unlabeled
from .models import DAModel
from .moments import m3sda_step
from .select import step_only

__all__ = ["linear_lr", "train_sources", "accuracy", "predict", "feature_pool", "adapt_adda", "adapt_m3sda",
           "finetune_target", "reestimate_stats"]

Log = Callable[[int, dict[str, float]], None] | None


def linear_lr(opt: torch.optim.Optimizer, step: int, total: int, lr: float, final_lr: float) -> None:
    """Set every group's lr on a linear ramp from ``lr`` (step 0) to ``final_lr`` (last step), times
    the group's ``lr_mult`` (default 1)."""
    t = step / max(1, total - 1)
    for g in opt.param_groups:
        g["lr"] = (lr + (final_lr - lr) * t) * g.get("lr_mult", 1.0)


def _seed(seed: int) -> torch.Generator:
    torch.manual_seed(seed)  # dropout / init inside the loop
    return torch.Generator().manual_seed(seed)


def train_sources(model: DAModel, sources: Sequence[Domain], *, steps: int, batch_size: int = 64,
                  lr: float = 2e-3, final_lr: float = 2e-5, weight_decay: float = 2e-5,
                  mixture_lr_mult: float = 1.0, seed: int = 0, log: Log = None, log_every: int = 100) -> list[float]:
    """Supervised multi-domain training on the sources (every parameter); returns the loss curve.

    Each step takes ``batch_size`` samples from every source; Adam with L2 ``weight_decay`` on
    weight matrices / kernels, learning rate decaying linearly from ``lr`` to ``final_lr`` (App. D.2);
    mixture logits (if any) use ``mixture_lr_mult`` times that rate.
    """
    check_domains(sources, labeled=True)
    _seed(seed)
    streams = {d.name: BatchStream(d, batch_size, seed=seed + i) for i, d in enumerate(sources)}
    opt = torch.optim.Adam(model.pretrain_groups(weight_decay, mixture_lr_mult), lr=lr)
    model.train()
    losses = []
    for s in range(steps):
        linear_lr(opt, s, steps, lr, final_lr)
        batches = {n: next(st) for n, st in streams.items()}
        loss = model.source_loss(batches)  # type: ignore[arg-type]
        losses.append(step_only(opt, loss))
        if log and (s % log_every == 0 or s == steps - 1):
            log(s, {"loss": losses[-1]})
    model.eval()
    return losses


@torch.no_grad()
def predict(model: DAModel, x: Tensor, domain: str, batch_size: int = 512) -> Tensor:
    """Class predictions (N,) in eval mode."""
    was = model.training
    model.eval()
    out = torch.cat([model.logits(x[i:i + batch_size], domain).argmax(-1) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def accuracy(model: DAModel, domain: Domain, as_domain: str | None = None, batch_size: int = 512) -> float:
    """Accuracy in % of ``model`` on a labelled domain (run as ``as_domain``, default its own name)."""
    require_labeled(domain, "accuracy")
    pred = predict(model, domain.x, as_domain or domain.name, batch_size)
    return 100.0 * float((pred == domain.y).float().mean())


@torch.no_grad()
def feature_pool(model: DAModel, sources: Sequence[Domain], per_domain: int, *, embed: bool, seed: int = 0,
                 batch_size: int = 512) -> list[tuple[Tensor, Tensor | None]]:
    """Fixed source features (``embed=False``: the body's output) or embeddings, ``per_domain`` each.

    Returns one ``(features (n, ...), labels (n,) or None)`` per source, computed in eval mode.
    """
    was = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in sources:
        idx = torch.randperm(len(d), generator=g)[:per_domain].to(d.x.device)
        x = d.x[idx]
        f = []
        for i in range(0, len(x), batch_size):
            h = model.features(x[i:i + batch_size], d.name)
            f.append(model.embed(h) if embed else h.contiguous())
        out.append((torch.cat(f), None if d.y is None else d.y[idx]))
    model.train(was)
    return out


def _target_opt(model: DAModel, target: str, lr: float) -> torch.optim.Optimizer:
    params = list(model.target_parameters(target).values())
    if not params:
        raise ConfigError(f"model has no target parameters for {target!r}; call add_target first")
    return torch.optim.Adam(params, lr=lr)


def _prepare(model: DAModel, sources: Sequence[Domain], target: Domain, method: str, target_bn: str) -> None:
    if target_bn not in ("train", "eval"):
        raise ConfigError(f"target_bn={target_bn!r}; choose 'train' (target BN on batch statistics, updated) "
                          f"or 'eval' (frozen statistics)")
    require_unlabeled(target, method)
    check_domains(list(sources) + [target])
    check_domains(sources, labeled=method == "moment matching" or None)
    if target.name not in model.domains:
        raise ConfigError(f"target {target.name!r} is not a domain of the model; call model.add_target first")


def adapt_adda(model: DAModel, sources: Sequence[Domain], target: Domain, *, steps: int, batch_size: int = 64,
               lr: float = 1e-3, final_lr: float | None = None, disc_lr: float = 2e-4, disc_final_lr: float = 1e-5,
               disc_hidden: int = 64, pool: int = 2000, target_bn: str = "eval", seed: int = 0,
               log: Log = None, log_every: int = 50) -> list[dict[str, float]]:
    """ADDA on the target's parameters only (App. D.3): returns the per-step losses.

    The discriminator (Adam, lr ``disc_lr`` decaying to ``disc_final_lr``) sees the body's output of
    ``pool`` fixed samples per source against the target's.
    """
    _prepare(model, sources, target, "ADDA", target_bn)
    g = _seed(seed)
    feats = torch.cat([f for f, _ in feature_pool(model, sources, pool, embed=False, seed=seed)])  # (M, ...)
    disc = Discriminator.for_features(feats.shape[1:], hidden=disc_hidden).to(feats.device)
    opt_d = torch.optim.Adam(disc.parameters(), lr=disc_lr, betas=(0.5, 0.999))
    opt_t = _target_opt(model, target.name, lr)
    stream = BatchStream(target, batch_size, seed=seed)
    hist = []
    with model.adapt_mode(target.name, target_bn == "train"):
        for s in range(steps):
            linear_lr(opt_d, s, steps, disc_lr, disc_final_lr)
            linear_lr(opt_t, s, steps, lr, lr if final_lr is None else final_lr)
            xt, _ = next(stream)
            fs = feats[torch.randint(len(feats), (len(xt),), generator=g).to(feats.device)]
            hist.append(adda_step(lambda x: model.features(x, target.name), xt, fs, disc, opt_d, opt_t))
            if log and (s % log_every == 0 or s == steps - 1):
                log(s, hist[-1])
    return hist


def adapt_m3sda(model: DAModel, sources: Sequence[Domain], target: Domain, *, steps: int, batch_size: int = 64,
                lr: float = 1e-3, final_lr: float | None = None, clf_lr: float = 1e-3, moment_weight: float = 1.0,
                discrepancy_weight: float = 1.0, k: int = 2, pool: int = 2000, target_bn: str = "eval",
                seed: int = 0, log: Log = None, log_every: int = 50) -> list[dict[str, float]]:
    """Moment matching + two-classifier discrepancy on the target's parameters only (App. D.4).

    The two classifiers of the min-max are copies of the model's first two heads (a copy of its only
    head, re-initialised, when it has one), trained during adaptation and then thrown away: the
    model keeps predicting with its own, unchanged heads.
    """
    _prepare(model, sources, target, "moment matching", target_bn)
    g = _seed(seed)
    pools = feature_pool(model, sources, pool, embed=True, seed=seed)        # per source (n, E), (n,)
    heads = list(model.heads)
    c1 = copy.deepcopy(heads[0])
    c2 = copy.deepcopy(heads[1] if len(heads) > 1 else heads[0])
    if len(heads) == 1:
        nn.init.normal_(c2.weight, 0, 0.01)
    critics = nn.ModuleList([nn.Sequential(copy.deepcopy(model.dropout), c1),
                             nn.Sequential(copy.deepcopy(model.dropout), c2)])
    opt_c = torch.optim.Adam(critics.parameters(), lr=clf_lr)
    opt_t = _target_opt(model, target.name, lr)
    stream = BatchStream(target, batch_size, seed=seed)
    per = max(1, batch_size // len(pools))
    hist = []
    with model.adapt_mode(target.name, target_bn == "train"):
        critics.train()
        for s in range(steps):
            linear_lr(opt_t, s, steps, lr, lr if final_lr is None else final_lr)
            xt, _ = next(stream)
            idx = [torch.randint(len(e), (per,), generator=g).to(e.device) for e, _ in pools]
            es = [e[i] for (e, _), i in zip(pools, idx)]
            ys = [y[i] for (_, y), i in zip(pools, idx)]  # type: ignore[index]
            hist.append(m3sda_step(lambda x: model.embed(model.features(x, target.name)), xt, es, ys, list(critics),
                                   opt_c, opt_t, moment_weight=moment_weight,
                                   discrepancy_weight=discrepancy_weight, k=k))
            if log and (s % log_every == 0 or s == steps - 1):
                log(s, hist[-1])
    return hist


def finetune_target(model: DAModel, target: Domain, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                    final_lr: float | None = None, target_bn: str = "eval", seed: int = 0,
                    params: Sequence[nn.Parameter] | None = None) -> list[float]:
    """Supervised fine-tuning of the target's parameters (the upper bound of Table 3; Table 9 "ft.")."""
    require_labeled(target, "supervised fine-tuning")
    _seed(seed)
    opt = (torch.optim.Adam(list(params), lr=lr) if params is not None else _target_opt(model, target.name, lr))
    stream = BatchStream(target, batch_size, seed=seed)
    losses = []
    with model.adapt_mode(target.name, target_bn == "train"):
        for s in range(steps):
            linear_lr(opt, s, steps, lr, lr if final_lr is None else final_lr)
            x, y = next(stream)
            loss = torch.nn.functional.cross_entropy(model.logits(x, target.name), y)
            losses.append(step_only(opt, loss))
    return losses


@torch.no_grad()
def reestimate_stats(model: DAModel, target: Domain, batch_size: int = 256) -> None:
    """Recompute the target's own BN running statistics on its (unlabelled) inputs, a cumulative mean
    over one pass (AdaBN-style). No parameter changes; shared statistics are untouched."""
    with model.adapt_mode(target.name):
        bns = [m for tm in model.target_modules(target.name) for m in tm.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        saved = [m.momentum for m in bns]
        for i, start in enumerate(range(0, len(target), batch_size)):
            for m in bns:
                m.momentum = 1.0 / (i + 1)                   # running = mean of the batch statistics so far
            model.features(target.x[start:start + batch_size], target.name)
        for m, mom in zip(bns, saved):
            m.momentum = mom
