"""The protocol of paper 002 §4.4 / App. D for one seed: every row of Tables 3, 9 and 11/12.

:func:`run_compositional` trains a :class:`CompositionalDA` on the sources, copies the chosen
source's mixture weights to the target, and from that one state measures source-only, ADDA, moment
matching, supervised fine-tuning (the upper bound), the Table 9 initializations, and an AdaBN-style
diagnostic (target BN statistics re-estimated, nothing trained). :func:`run_isometric` does the same
for the plain isometric baseline, adapting only the target's input adapter ("(IA)").

Each returns ``{"acc": {row: %}, "params": {row: trained parameters}, "info": {...}}``; the
experiments aggregate these over seeds. This is an experiment protocol (rows named after the paper's
tables, one budget object), not a library routine: a user adapting a model calls
:func:`tessera.adapt.train_sources` / :func:`~tessera.adapt.adapt_adda` / ... directly. Every engine
run keeps its checkpoints in ``work / "<run>"`` so that a killed seed continues where it stopped.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..adapt import (CompositionalDA, DAModel, Domain, IsometricDA, accuracy, adapt_adda, adapt_m3sda,
                     finetune_target, reestimate_stats, train_sources)
from ..adapt.domains import check_domains
from ..adapt.init import accuracy_init, best_source, learned_init, random_init, rank_sources
from ..mixture import count_parameters

__all__ = ["AdaptConfig", "run_compositional", "run_isometric", "ROWS"]

ROWS = {"source_only": "Source-only", "comp_source_only": "Comp. source-only", "ia_adda": "Adversarial (IA)",
        "comp_adda": "Comp. Adversarial", "ia_m3sda": "Moment Matching (IA)", "comp_m3sda": "Comp. Moment Matching",
        "comp_supervised": "Comp. supervised"}
"""Table 3 row keys -> the paper's row names."""


@dataclass
class AdaptConfig:
    """Step counts and learning rates of one seed's protocol (defaults: App. D.2-D.4 where given)."""

    pretrain_steps: int = 1000
    batch_size: int = 64            # per source domain and step
    lr: float = 2e-3                # source training, linear decay to final_lr (App. D.2)
    final_lr: float = 2e-5
    weight_decay: float = 2e-5      # L2 on kernels (Keras 1e-5 * sum w^2 -> grad 2e-5 w)
    mixture_lr_mult: float = 10.0   # mixture logits learn this much faster (the paper used RMSProp at 0.02-0.04)
    adapt_steps: int = 300
    adapt_batch: int = 64
    lr_mixture: float = 1e-3        # target mixture logits (1e-2 makes ADDA collapse on digits)
    lr_adapter: float = 1e-3        # target input adapter (IA baselines)
    disc_lr: float = 2e-4           # App. D.3: 2e-4 -> 1e-5
    disc_final_lr: float = 1e-5
    disc_hidden: int = 64
    clf_lr: float = 1e-3            # the two classifiers of the discrepancy min-max
    moment_weight: float = 1.0
    discrepancy_weight: float = 1.0
    moment_order: int = 2
    pool: int = 2000                # fixed source samples per domain for the adaptation losses
    ft_steps: int = 300             # supervised fine-tuning (upper bound, Table 9 ft.)
    learned_steps: int = 100        # learned interpolation of Table 9
    init_source: str = "accuracy"   # "accuracy" (App. D.2: the source whose weights score best on labelled
                                    # target train data), "entropy" (label-free: lowest prediction entropy) or a name
    target_bn: str = "eval"         # target's own BN layers while adapting: "eval" (statistics frozen: only the
                                    # trained parameters act) | "train" (batch statistics, target's updated)
    stats_diagnostic: bool = True   # also report: source-only + re-estimated target BN statistics, and both
                                    # methods with the other target_bn mode

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _restore(model: DAModel, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state)


def _sub(work: Path | None, name: str) -> Path | None:
    return None if work is None else Path(work) / name


def _unsupervised(model: DAModel, sources: Sequence[Domain], unl: Domain, test: Domain, cfg: AdaptConfig,
                  lr: float, bn: str, seed: int, state: dict[str, torch.Tensor], work: Path | None,
                  suffix: str = "") -> tuple[float, float]:
    """Target accuracy after ADDA and after moment matching, each from ``state`` (restored after)."""
    common = dict(steps=cfg.adapt_steps, batch_size=cfg.adapt_batch, lr=lr, pool=cfg.pool, target_bn=bn, seed=seed)
    adapt_adda(model, sources, unl, disc_lr=cfg.disc_lr, disc_final_lr=cfg.disc_final_lr,
               disc_hidden=cfg.disc_hidden, out_dir=_sub(work, f"adda{suffix}"), **common)
    adda = accuracy(model, test, unl.name)
    _restore(model, state)
    adapt_m3sda(model, sources, unl, clf_lr=cfg.clf_lr, moment_weight=cfg.moment_weight,
                discrepancy_weight=cfg.discrepancy_weight, k=cfg.moment_order, out_dir=_sub(work, f"m3sda{suffix}"),
                **common)
    m3sda = accuracy(model, test, unl.name)
    _restore(model, state)
    return adda, m3sda


def _supervised(model: DAModel, train: Domain, test: Domain, cfg: AdaptConfig, lr: float, seed: int,
                state: dict[str, torch.Tensor], work: Path | None, name: str = "supervised") -> float:
    """Target accuracy after supervised fine-tuning of the target's parameters; ``state`` restored after."""
    finetune_target(model, train, steps=cfg.ft_steps, batch_size=cfg.adapt_batch, lr=lr, target_bn=cfg.target_bn,
                    seed=seed, out_dir=_sub(work, name))
    out = accuracy(model, test, train.name)
    _restore(model, state)
    return out


def run_compositional(model: CompositionalDA, sources: Sequence[Domain], target_train: Domain, target_test: Domain,
                      source_tests: Sequence[Domain], cfg: AdaptConfig, *, seed: int = 0,
                      log: Callable[[str], None] = print, table9: bool = True, work: Path | None = None
                      ) -> dict[str, Any]:
    """All compositional rows for one seed. ``target_train`` carries labels, used ONLY by the
    supervised rows (upper bound, Table 9) and the ``init_source="accuracy"`` pick; the
    unsupervised methods get ``target_train.unlabeled()``."""
    check_domains(list(sources) + [target_train])
    check_domains(list(sources) + [target_train, target_test] + list(source_tests), distinct=False)
    t, names = target_train.name, [d.name for d in sources]
    unl = target_train.unlabeled()
    acc: dict[str, float] = {}
    params: dict[str, int] = {}
    info: dict[str, Any] = {}

    log(f"  comp: training on {len(sources)} sources ({cfg.pretrain_steps} steps)")
    losses = train_sources(model, sources, steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           final_lr=cfg.final_lr, weight_decay=cfg.weight_decay,
                           mixture_lr_mult=cfg.mixture_lr_mult, seed=seed, out_dir=_sub(work, "pretrain"))
    info["final_loss"] = sum(losses[-20:]) / len(losses[-20:])
    params["pretrain"] = count_parameters(model.parameters())
    for d in source_tests:
        acc[f"source:{d.name}"] = accuracy(model, d)

    ent = rank_sources(model, unl, names, by="entropy")
    by_acc = rank_sources(model, target_train, names, by="accuracy")
    info["target_entropy_by_source"], info["target_train_acc_by_source"] = ent, by_acc
    pick = (best_source(ent, "entropy") if cfg.init_source == "entropy" else
            best_source(by_acc, "accuracy") if cfg.init_source == "accuracy" else cfg.init_source)
    info["init_source"], info["init_source_by_accuracy"] = pick, best_source(by_acc, "accuracy")
    model.add_target(t, from_domain=pick)
    state = copy.deepcopy(model.state_dict())
    n_target = count_parameters(model.target_parameters(t).values())
    acc["comp_source_only"] = accuracy(model, target_test, t)
    params["comp_source_only"] = params["pretrain"]
    log(f"  comp: source-only {acc['comp_source_only']:.2f}% (target weights from {pick})")

    if cfg.stats_diagnostic:
        reestimate_stats(model, unl)
        acc["comp_stats_only"], params["comp_stats_only"] = accuracy(model, target_test, t), 0
        _restore(model, state)

    other = "train" if cfg.target_bn == "eval" else "eval"
    for suffix, bn in [("", cfg.target_bn)] + ([(f"_bn_{other}", other)] if cfg.stats_diagnostic else []):
        acc[f"comp_adda{suffix}"], acc[f"comp_m3sda{suffix}"] = _unsupervised(
            model, sources, unl, target_test, cfg, cfg.lr_mixture, bn, seed, state, work, suffix)
        params[f"comp_adda{suffix}"] = params[f"comp_m3sda{suffix}"] = n_target
    acc["comp_supervised"] = _supervised(model, target_train, target_test, cfg, cfg.lr_mixture, seed, state, work)
    params["comp_supervised"] = n_target
    log(f"  comp: ADDA {acc['comp_adda']:.2f}%, moment matching {acc['comp_m3sda']:.2f}%, "
        f"supervised {acc['comp_supervised']:.2f}%")

    if table9:
        inits = {"random": lambda: random_init(model, seed=seed + 1000),
                 "accuracy": lambda: accuracy_init(model, by_acc),
                 "learned": lambda: learned_init(model, target_train, names, steps=cfg.learned_steps,
                                                 batch_size=cfg.adapt_batch, target_bn=cfg.target_bn, seed=seed,
                                                 out_dir=_sub(work, "learned_init"))}
        for kind, make in inits.items():
            out = make()
            logits, coef = out if isinstance(out, tuple) else (out, None)
            if coef is not None:
                info["learned_coefficients"] = coef
            _restore(model, state)  # learned_init updated the target BN statistics: start from the same state
            model.set_logits(t, logits)
            acc[f"init:{kind}"] = accuracy(model, target_test, t)
            acc[f"ft:{kind}"] = _supervised(model, target_train, target_test, cfg, cfg.lr_mixture, seed, state, work,
                                            f"ft_{kind}")
        acc["init:copy"], acc["ft:copy"] = acc["comp_source_only"], acc["comp_supervised"]
    return {"acc": acc, "params": params, "info": info}


def run_isometric(model: IsometricDA, sources: Sequence[Domain], target_train: Domain, target_test: Domain,
                  source_tests: Sequence[Domain], cfg: AdaptConfig, *, seed: int = 0,
                  log: Callable[[str], None] = print, work: Path | None = None) -> dict[str, Any]:
    """The plain isometric baseline for one seed: source-only, and ADDA / moment matching / supervised
    fine-tuning of the target's own input adapter."""
    check_domains(list(sources) + [target_train])
    check_domains(list(sources) + [target_train, target_test] + list(source_tests), distinct=False)
    t = target_train.name
    unl = target_train.unlabeled()
    acc: dict[str, float] = {}
    params: dict[str, int] = {}
    log(f"  isometric: training on {len(sources)} sources ({cfg.pretrain_steps} steps)")
    train_sources(model, sources, steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                  final_lr=cfg.final_lr, weight_decay=cfg.weight_decay, seed=seed, out_dir=_sub(work, "pretrain"))
    params["pretrain"] = count_parameters(model.parameters())
    for d in source_tests:
        acc[f"source:{d.name}"] = accuracy(model, d)
    model.add_target(t)
    state = copy.deepcopy(model.state_dict())
    n_target = count_parameters(model.target_parameters(t).values())
    acc["source_only"], params["source_only"] = accuracy(model, target_test, t), params["pretrain"]
    acc["ia_adda"], acc["ia_m3sda"] = _unsupervised(model, sources, unl, target_test, cfg, cfg.lr_adapter,
                                                    cfg.target_bn, seed, state, work)
    acc["ia_supervised"] = _supervised(model, target_train, target_test, cfg, cfg.lr_adapter, seed, state, work)
    params["ia_adda"] = params["ia_m3sda"] = params["ia_supervised"] = n_target
    log(f"  isometric: source-only {acc['source_only']:.2f}%, ADDA (IA) {acc['ia_adda']:.2f}%, "
        f"moment matching (IA) {acc['ia_m3sda']:.2f}%, supervised (IA) {acc['ia_supervised']:.2f}%")
    return {"acc": acc, "params": params, "info": {}}
