"""Source training, adaptation and fine-tuning on the one engine (:class:`tessera.train.Trainer`).

Every routine works on any :class:`~tessera.adapt.models.DAModel`. The adaptation routines give
their optimizers ``model.target_parameters(target)`` only (the engine backpropagates each loss into
its optimizer's parameters only), and run with ``model.set_adapt_mode(target)``, so the shared parts
and every source domain stay bit-identical. Sources are fixed while a target adapts, so their
features / embeddings are computed once (eval mode, no grad) into a *pool* that every step samples
with the engine's per-step generator. Each routine takes ``out_dir``: the run keeps its engine
checkpoints there and a rerun continues from them (``fit(resume=True)``).

>>> import torch
>>> from tessera.adapt import CompositionalDA, Domain, train_sources, adapt_m3sda, accuracy
>>> g = torch.Generator().manual_seed(0)
>>> src = Domain("src", torch.rand(32, 1, 8, 8, generator=g), torch.arange(32) % 2)
>>> m = CompositionalDA.build(["src"], 2, num_templates=2, depth=2, channels=8, patch=4, head_channels=(8, 8))
>>> losses = train_sources(m, [src], steps=3, batch_size=8)
>>> m.add_target("tgt", from_domain="src")
>>> hist = adapt_m3sda(m, [src], Domain("tgt", src.x * 0.5), steps=2, batch_size=8, pool=16)
>>> len(losses), sorted(hist[-1])
(3, ['clf_loss', 'discrepancy', 'moment'])
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn.norm import reestimate_bn
from ..train import Metric, Optim, Task, Trainer, mix_seed
from ._engine import Recorded, adam, check_target_bn, fit, linear
from .adversarial import ADDA, Discriminator
from .domains import Domain, check_domains, require_labeled, require_unlabeled
from .models import DAModel
from .moments import MomentMatching

__all__ = ["train_sources", "accuracy", "predict", "feature_pool", "adapt_adda", "adapt_m3sda",
           "finetune_target", "reestimate_stats"]

PathLike = str | Path | None
_PERCENT = Metric("accuracy", lambda o, y: 100.0 * (o.argmax(-1) == y).float())   # accuracy in %, as accuracy()


class _SourceTraining(Recorded):
    """Each step one batch of every source (task i = source i); the loss is ``model.source_loss``."""

    def __init__(self, model: DAModel, names: Sequence[str], groups: list[dict], lr: float, final_lr: float,
                 weight_decay: float):
        super().__init__()
        self.model, self.names, self.groups = model, list(names), groups
        self.lr, self.final_lr, self.wd = lr, final_lr, weight_decay

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        cfg = adam(self.lr)
        cfg.weight_decay = self.wd
        return {"main": Optim(self.groups, config=cfg, schedule=linear(self.lr, self.final_lr))}

    def training_step(self, trainer: Trainer, step: int) -> Tensor:
        loss = self.model.source_loss({n: trainer.batch(i) for i, n in enumerate(self.names)})
        trainer.record("loss", loss)
        return loss


def train_sources(model: DAModel, sources: Sequence[Domain], *, steps: int, batch_size: int = 64,
                  lr: float = 2e-3, final_lr: float = 2e-5, weight_decay: float = 2e-5,
                  mixture_lr_mult: float = 1.0, seed: int = 0, out_dir: PathLike = None,
                  checkpoint_every: int = 200, device: str | None = None) -> list[float]:
    """Supervised multi-domain training on the sources (every parameter); returns the loss curve.

    Each step takes ``batch_size`` samples from every source; Adam with L2 ``weight_decay`` on
    weight matrices / kernels, learning rate decaying linearly from ``lr`` to ``final_lr`` (App. D.2);
    mixture logits (if any) use ``mixture_lr_mult`` times that rate. The model is left in eval mode.
    """
    check_domains(sources, labeled=True)
    b = min(batch_size, *(len(d) for d in sources))
    method = _SourceTraining(model, [d.name for d in sources], model.pretrain_groups(lr, weight_decay, mixture_lr_mult),
                             lr, final_lr, weight_decay)
    settings = dict(sources=[d.name for d in sources], lr=lr, final_lr=final_lr, weight_decay=weight_decay,
                    mixture_lr_mult=mixture_lr_mult)
    fit(model, [Task(d.name, train=(d.x, d.y)) for d in sources], method, name="train_sources", steps=steps,
        batch_size=b, seed=seed, settings=settings, out_dir=out_dir, checkpoint_every=checkpoint_every, device=device)
    model.eval()
    return [h["loss"] for h in method.history]


@torch.no_grad()
def predict(model: DAModel, x: Tensor, domain: str, batch_size: int = 512) -> Tensor:
    """Class predictions (N,) in eval mode."""
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = torch.cat([model.logits(x[i:i + batch_size].to(dev), domain).argmax(-1).cpu()
                     for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def accuracy(model: DAModel, domain: Domain, as_domain: str | None = None, batch_size: int = 512) -> float:
    """Accuracy in % of ``model`` on a labelled domain (run as ``as_domain``, default its own name)."""
    require_labeled(domain, "accuracy")
    pred = predict(model, domain.x, as_domain or domain.name, batch_size)
    return 100.0 * float((pred == domain.y.cpu()).float().mean())


@torch.no_grad()
def feature_pool(model: DAModel, sources: Sequence[Domain], per_domain: int, *, embed: bool, seed: int = 0,
                 batch_size: int = 512) -> list[tuple[Tensor, Tensor | None]]:
    """Fixed source features (``embed=False``: the body's output) or embeddings, ``per_domain`` each.

    Returns one ``(features (n, ...), labels (n,) or None)`` per source, computed in eval mode.
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = []
    for d in sources:
        idx = torch.randperm(len(d), generator=g)[:per_domain]
        x = d.x[idx]
        f = []
        for i in range(0, len(x), batch_size):
            h = model.features(x[i:i + batch_size].to(dev), d.name)
            f.append(model.embed(h) if embed else h.contiguous())
        out.append((torch.cat(f), None if d.y is None else d.y[idx].to(dev)))
    model.train(was)
    return out


def _prepare(model: DAModel, sources: Sequence[Domain], target: Domain, method: str, target_bn: str) -> None:
    check_target_bn(target_bn)
    require_unlabeled(target, method)
    check_domains(list(sources) + [target])
    check_domains(sources, labeled=method == "moment matching" or None)
    if target.name not in model.domains:
        raise ConfigError(f"target {target.name!r} is not a domain of the model; call model.add_target first")
    if not model.target_parameters(target.name):
        raise ConfigError(f"model has no target parameters for {target.name!r}; call add_target first")


def adapt_adda(model: DAModel, sources: Sequence[Domain], target: Domain, *, steps: int, batch_size: int = 64,
               lr: float = 1e-3, final_lr: float | None = None, disc_lr: float = 2e-4, disc_final_lr: float = 1e-5,
               disc_hidden: int = 64, pool: int = 2000, target_bn: str = "eval", seed: int = 0,
               out_dir: PathLike = None, checkpoint_every: int = 100, device: str | None = None
               ) -> list[dict[str, float]]:
    """ADDA on the target's parameters only (App. D.3, :class:`~tessera.adapt.ADDA`); returns the
    per-step ``{"disc_loss", "disc_acc", "target_loss"}``.

    The discriminator (Adam, lr ``disc_lr`` decaying to ``disc_final_lr``) sees the body's output of
    ``pool`` fixed samples per source against the target's.
    """
    _prepare(model, sources, target, "ADDA", target_bn)
    feats = torch.cat([f for f, _ in feature_pool(model, sources, pool, embed=False, seed=seed)])  # (M, ...)
    torch.manual_seed(mix_seed(seed, 1))
    disc = Discriminator.for_features(feats.shape[1:], hidden=disc_hidden).to(feats.device)
    method = ADDA(model, target.name, feats, disc, lr=lr, final_lr=final_lr, disc_lr=disc_lr,
                  disc_final_lr=disc_final_lr, target_bn=target_bn)
    fit(model, [Task(target.name, train=target.x)], method, name="adapt_adda", steps=steps,
        batch_size=min(batch_size, len(target)), seed=seed, settings={**method.settings(), "disc_hidden": disc_hidden},
        out_dir=out_dir, checkpoint_every=checkpoint_every, device=device)
    return method.history


def adapt_m3sda(model: DAModel, sources: Sequence[Domain], target: Domain, *, steps: int, batch_size: int = 64,
                lr: float = 1e-3, final_lr: float | None = None, clf_lr: float = 1e-3, moment_weight: float = 1.0,
                discrepancy_weight: float = 1.0, k: int = 2, pool: int = 2000, target_bn: str = "eval",
                seed: int = 0, out_dir: PathLike = None, checkpoint_every: int = 100, device: str | None = None
                ) -> list[dict[str, float]]:
    """Moment matching + two-classifier discrepancy on the target's parameters only (App. D.4,
    :class:`~tessera.adapt.MomentMatching`); returns the per-step ``{"clf_loss", "moment", "discrepancy"}``.

    The two classifiers of the min-max are copies of the model's first two heads (a copy of its only
    head, re-initialised, when it has one), trained during adaptation and then thrown away: the
    model keeps predicting with its own, unchanged heads. Each step draws ``batch_size // #sources``
    embeddings of each source's pool.
    """
    _prepare(model, sources, target, "moment matching", target_bn)
    pools = feature_pool(model, sources, pool, embed=True, seed=seed)        # per source (n, E), (n,)
    heads = list(model.heads)
    c1 = copy.deepcopy(heads[0])
    c2 = copy.deepcopy(heads[1] if len(heads) > 1 else heads[0])
    if len(heads) == 1:
        with torch.no_grad():
            c2.weight.copy_(torch.randn(c2.weight.shape, generator=torch.Generator().manual_seed(seed)) * 0.01)
    critics = [nn.Sequential(copy.deepcopy(model.dropout), c1), nn.Sequential(copy.deepcopy(model.dropout), c2)]
    method = MomentMatching(model, target.name, pools, critics, per_source=max(1, batch_size // len(pools)), lr=lr,
                            final_lr=final_lr, clf_lr=clf_lr, moment_weight=moment_weight,
                            discrepancy_weight=discrepancy_weight, k=k, target_bn=target_bn)
    fit(model, [Task(target.name, train=target.x)], method, name="adapt_m3sda", steps=steps,
        batch_size=min(batch_size, len(target)), seed=seed, settings=method.settings(), out_dir=out_dir,
        checkpoint_every=checkpoint_every, device=device)
    return method.history


class _Finetune(Recorded):
    """Cross-entropy of the target's labelled batches through ``model.logits(x, target)``."""

    def __init__(self, model: DAModel, target: str, params: list[nn.Parameter], lr: float, final_lr: float | None,
                 train_bn: bool):
        super().__init__()
        self.model, self.target, self.params = model, target, params
        self.lr, self.final_lr, self.train_bn = lr, final_lr, train_bn

    def optimizers(self, trainer: Trainer) -> dict[str, Optim]:
        return {"main": Optim(self.params, config=adam(self.lr), schedule=linear(self.lr, self.final_lr))}

    def training_step(self, trainer: Trainer, step: int) -> Tensor:
        self.model.set_adapt_mode(self.target, self.train_bn)
        x, y = trainer.batch(0)
        loss = F.cross_entropy(self.model.logits(x, self.target), y)
        trainer.record("loss", loss)
        return loss


def finetune_target(model: DAModel, target: Domain, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                    final_lr: float | None = None, target_bn: str = "eval", seed: int = 0,
                    params: Sequence[nn.Parameter] | None = None, val: Domain | None = None, eval_every: int = 0,
                    out_dir: PathLike = None, checkpoint_every: int = 100, device: str | None = None
                    ) -> list[dict[str, float]]:
    """Supervised fine-tuning of the target's parameters (or ``params``) on labelled target data:
    the upper bound of Table 3 and Table 9's "ft." rows. Returns the per-step ``{"loss"}``; with a
    labelled ``val`` domain, its accuracy (%) joins the entry of every ``eval_every``-th and of the
    last step as ``"val_<name>"`` (a learning curve to check convergence on)."""
    require_labeled(target, "supervised fine-tuning")
    train_bn = check_target_bn(target_bn)
    ps = list(params) if params is not None else list(model.target_parameters(target.name).values())
    if not ps:
        raise ConfigError(f"nothing to fine-tune for {target.name!r}; call add_target first or pass params")
    ev = None
    if val is not None:
        require_labeled(val, "the validation of supervised fine-tuning")
        ev = (val.x, val.y)
    method = _Finetune(model, target.name, ps, lr, final_lr, train_bn)
    settings = dict(target=target.name, lr=lr, final_lr=final_lr, train_bn=train_bn, params=len(ps))
    task = Task(target.name, train=(target.x, target.y), eval=ev, metrics=[_PERCENT],
                forward=lambda m, x: m.logits(x, target.name))
    fit(model, [task], method, name="finetune_target", steps=steps, batch_size=min(batch_size, len(target)), seed=seed,
        settings=settings, out_dir=out_dir, checkpoint_every=checkpoint_every, device=device,
        eval_every=eval_every if val is not None else 0)
    return method.history


@torch.no_grad()
def reestimate_stats(model: DAModel, target: Domain, batch_size: int = 256) -> None:
    """Recompute the target's own BN running statistics on its (unlabelled) inputs: the average over
    one pass (AdaBN-style, :func:`tessera.nn.norm.reestimate_bn`). No parameter changes; the shared
    statistics and every other domain's are untouched."""
    name = target.name
    model.activate(name)
    layers = [m for tm in model.target_modules(name) for m in tm.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    dev = next(model.parameters()).device
    batches = (target.x[i:i + batch_size].to(dev) for i in range(0, len(target), batch_size))
    reestimate_bn(model, batches, forward=lambda x: model.features(x, name), layers=layers)
