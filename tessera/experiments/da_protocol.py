"""The protocol of paper 002 §4.4 / App. D for one seed: every row of Tables 3, 9 and 11/12.

:func:`run_compositional` trains a :class:`CompositionalDA` on the sources, copies the chosen
source's mixture weights to the target, and from that one state measures source-only, ADDA, moment
matching, supervised fine-tuning (the upper bound), the Table 9 initializations, and an AdaBN-style
diagnostic (target BN statistics re-estimated, nothing trained). :func:`run_isometric` does the same
for the plain isometric baseline, adapting only the target's input adapter ("(IA)").

Learning rates of the target runs. With ``val_size > 0`` a labelled validation split of the target's
*training* images is held out (the rest is the adaptation data, unlabelled for the unsupervised
rows); every choice that needs target labels is made on it and never on the test set: the source
whose mixture weights the target copies (App. D.2), the accuracy-based coefficients of Table 9, and
each row's learning rate: every rate in ``lr_grid`` (unsupervised rows) or ``ft_lr_grid``
(supervised rows) is run from the same state, and the one with the best validation accuracy is
kept (ties: the smaller rate). With ``bn_grid`` (e.g. ``("eval", "train")``) every rate is also run
with each mode of the target's BN statistics while adapting (frozen, or updated from the target's
batches), and the (rate, mode) pair is chosen the same way (ties: ``target_bn``); each mode's own
validation-chosen result is also reported (``<row>_bn_<mode>``). Held-out *source* data cannot make
these choices: only target parameters move, so the sources' predictions are the same for every rate.
The validation and test accuracy of every run is recorded in ``info["selection"]``.

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
    lr_mixture: float = 1e-3        # target mixture logits, when no grid is given
    lr_adapter: float = 1e-3        # target input adapter (IA baselines), when no grid is given
    lr_grid: tuple[float, ...] = ()     # target learning rates each unsupervised row tries (chosen on validation)
    ft_lr_grid: tuple[float, ...] = ()  # the same for the supervised rows
    target_final_frac: float | None = None  # target lr decays linearly to lr * this (App. D.3/D.4 decay 20x/10x)
    val_size: int = 0               # labelled target-train images held out for every label-based choice
    disc_lr: float = 2e-4           # App. D.3: 2e-4 -> 1e-5
    disc_final_lr: float = 1e-5
    disc_hidden: int = 64
    clf_lr: float = 1e-3            # the two classifiers of the discrepancy min-max
    moment_weight: float = 1.0
    discrepancy_weight: float = 1.0
    moment_order: int = 2
    pool: int = 2000                # fixed source samples per domain for the adaptation losses
    ft_steps: int = 300             # supervised fine-tuning (upper bound, Table 9 ft.)
    ft_eval_every: int = 0          # validation accuracy every N fine-tuning steps (the convergence curve)
    learned_steps: int = 100        # learned interpolation of Table 9
    init_source: str = "accuracy"   # "accuracy" (App. D.2: the source whose weights score best on labelled
                                    # target data), "entropy" (label-free: lowest prediction entropy) or a name
    target_bn: str = "eval"         # target's own BN layers while adapting: "eval" (statistics frozen: only the
                                    # trained parameters act) | "train" (batch statistics, target's updated)
    stats_diagnostic: bool = True   # also report source-only + re-estimated target BN statistics (nothing trained)
    other_bn_rows: bool = True      # also run both unsupervised rows with the other target_bn mode (chosen rate);
                                    # with a bn_grid of both modes each mode is reported anyway (no extra runs)
    bn_grid: tuple[str, ...] = ()   # target_bn modes every row tries with every rate (chosen on validation);
                                    # () = only target_bn

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sub(work: Path | None, name: str) -> Path | None:
    return None if work is None else Path(work) / name


def split_target(target_train: Domain, val_size: int) -> tuple[Domain, Domain | None]:
    """(adaptation part, labelled validation part of ``val_size`` images or None); a fixed split."""
    if val_size <= 0:
        return target_train, None
    perm = torch.randperm(len(target_train), generator=torch.Generator().manual_seed(0))
    return target_train.subset(perm[val_size:]), target_train.subset(perm[:val_size])


class _Rows:
    """One seed's target runs, each from the same source-trained ``state`` (restored after every run)."""

    def __init__(self, model: DAModel, sources: Sequence[Domain], train: Domain, val: Domain | None, test: Domain,
                 cfg: AdaptConfig, seed: int, work: Path | None):
        self.model, self.sources, self.train, self.val, self.test = model, list(sources), train, val, test
        self.cfg, self.seed, self.work, self.t = cfg, seed, work, train.name
        self.state = copy.deepcopy(model.state_dict())
        self.selection: dict[str, Any] = {}

    def restore(self) -> None:
        self.model.load_state_dict(self.state)

    def _run(self, kind: str, lr: float, bn: str, name: str) -> list[dict[str, float]]:
        c = self.cfg
        common = dict(batch_size=c.adapt_batch, lr=lr, target_bn=bn, seed=self.seed, out_dir=_sub(self.work, name),
                      final_lr=None if c.target_final_frac is None else lr * c.target_final_frac)
        unl = self.train.unlabeled()
        if kind == "adda":
            return adapt_adda(self.model, self.sources, unl, steps=c.adapt_steps, pool=c.pool, disc_lr=c.disc_lr,
                              disc_final_lr=c.disc_final_lr, disc_hidden=c.disc_hidden, **common)
        if kind == "m3sda":
            return adapt_m3sda(self.model, self.sources, unl, steps=c.adapt_steps, pool=c.pool, clf_lr=c.clf_lr,
                               moment_weight=c.moment_weight, discrepancy_weight=c.discrepancy_weight,
                               k=c.moment_order, **common)
        return finetune_target(self.model, self.train, steps=c.ft_steps, val=self.val,
                               eval_every=c.ft_eval_every, **common)

    def _pick(self, tried: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The run with the best validation accuracy (ties: the smaller rate, then ``target_bn``)."""
        return min(tried.values(), key=lambda r: (-r.get("val", 0.0), r["lr"], r["bn"] != self.cfg.target_bn))

    def row(self, key: str, kind: str, lrs: Sequence[float], bns: Sequence[str] | None = None,
            logits: torch.Tensor | None = None) -> float:
        """Test accuracy of ``kind`` at the (rate, BN mode) of ``lrs`` x ``bns`` with the best validation accuracy."""
        bns = tuple(bns or (self.cfg.target_bn,))
        tried: dict[str, dict[str, Any]] = {}
        for bn in bns:
            for lr in lrs:
                if logits is not None:
                    self.model.set_logits(self.t, logits)
                name = key + (f"_lr{lr:g}" if len(lrs) > 1 else "") + (f"_bn{bn}" if len(bns) > 1 else "")
                hist = self._run(kind, lr, bn, name)
                r: dict[str, Any] = {"lr": lr, "bn": bn, "test": accuracy(self.model, self.test, self.t)}
                if self.val is not None:
                    r["val"] = accuracy(self.model, self.val, self.t)
                    curve = [[i + 1, h[f"val_{self.t}"]] for i, h in enumerate(hist) if f"val_{self.t}" in h]
                    if len(curve) > 1:
                        r["val_curve"] = curve
                tried[f"{lr:g}" + (f"/{bn}" if len(bns) > 1 else "")] = r
                self.restore()
        best = self._pick(tried)
        if len(tried) > 1:
            self.selection[key] = {"chosen_lr": best["lr"], "criterion": "target-train validation accuracy",
                                   "tried": tried}
            if len(bns) > 1:
                self.selection[key]["chosen_bn"] = best["bn"]
                self.selection[key]["per_bn"] = {bn: self._pick({k: r for k, r in tried.items() if r["bn"] == bn})
                                                 for bn in bns}
        return best["test"]

    def chosen(self, key: str, default: float) -> float:
        return self.selection.get(key, {}).get("chosen_lr", default)

    def chosen_bn(self, key: str) -> str:
        return self.selection.get(key, {}).get("chosen_bn", self.cfg.target_bn)


def run_compositional(model: CompositionalDA, sources: Sequence[Domain], target_train: Domain, target_test: Domain,
                      source_tests: Sequence[Domain], cfg: AdaptConfig, *, seed: int = 0,
                      log: Callable[[str], None] = print, table9: bool = True, work: Path | None = None
                      ) -> dict[str, Any]:
    """All compositional rows for one seed. ``target_train``'s labels are used ONLY by the supervised
    rows (upper bound, Table 9) and, on its validation split (or all of it when ``val_size`` is 0),
    by the label-based choices; the unsupervised methods get the adaptation part unlabelled."""
    check_domains(list(sources) + [target_train])
    check_domains(list(sources) + [target_train, target_test] + list(source_tests), distinct=False)
    t, names = target_train.name, [d.name for d in sources]
    train, val = split_target(target_train, cfg.val_size)
    choose_on = val if val is not None else target_train
    acc: dict[str, float] = {}
    params: dict[str, int] = {}
    info: dict[str, Any] = {"n_adapt": len(train), "n_val": 0 if val is None else len(val)}

    log(f"  comp: training on {len(sources)} sources ({cfg.pretrain_steps} steps)")
    losses = train_sources(model, sources, steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                           final_lr=cfg.final_lr, weight_decay=cfg.weight_decay,
                           mixture_lr_mult=cfg.mixture_lr_mult, seed=seed, out_dir=_sub(work, "pretrain"))
    info["final_loss"] = sum(losses[-20:]) / len(losses[-20:])
    params["pretrain"] = count_parameters(model.parameters())
    for d in source_tests:
        acc[f"source:{d.name}"] = accuracy(model, d)

    ent = rank_sources(model, train.unlabeled(), names, by="entropy")
    by_acc = rank_sources(model, choose_on, names, by="accuracy")
    info["target_entropy_by_source"], info["target_train_acc_by_source"] = ent, by_acc
    pick = (best_source(ent, "entropy") if cfg.init_source == "entropy" else
            best_source(by_acc, "accuracy") if cfg.init_source == "accuracy" else cfg.init_source)
    info["init_source"], info["init_source_by_accuracy"] = pick, best_source(by_acc, "accuracy")
    model.add_target(t, from_domain=pick)
    rows = _Rows(model, sources, train, val, target_test, cfg, seed, work)
    n_target = count_parameters(model.target_parameters(t).values())
    acc["comp_source_only"] = accuracy(model, target_test, t)
    params["comp_source_only"] = params["pretrain"]
    log(f"  comp: source-only {acc['comp_source_only']:.2f}% (target weights from {pick})")

    if cfg.stats_diagnostic:
        reestimate_stats(model, train.unlabeled())
        acc["comp_stats_only"], params["comp_stats_only"] = accuracy(model, target_test, t), 0
        rows.restore()

    lrs, ft_lrs = cfg.lr_grid or (cfg.lr_mixture,), cfg.ft_lr_grid or (cfg.lr_mixture,)
    bns = cfg.bn_grid or (cfg.target_bn,)
    for kind in ("adda", "m3sda"):
        acc[f"comp_{kind}"] = rows.row(kind, kind, lrs, bns)
    acc["comp_supervised"] = rows.row("supervised", "supervised", ft_lrs, bns)
    if len(bns) > 1:           # each BN mode's own validation-chosen result
        for kind in ("adda", "m3sda", "supervised"):
            for bn, r in rows.selection[kind]["per_bn"].items():
                acc[f"comp_{kind}_bn_{bn}"] = r["test"]
    elif cfg.other_bn_rows:    # the other target_bn mode, at the rate chosen above
        other = "train" if cfg.target_bn == "eval" else "eval"
        for kind in ("adda", "m3sda"):
            acc[f"comp_{kind}_bn_{other}"] = rows.row(f"{kind}_bn_{other}", kind, (rows.chosen(kind, lrs[0]),),
                                                      (other,))
    for key in [k for k in acc if k.startswith("comp_") and k not in ("comp_source_only", "comp_stats_only")]:
        params[key] = n_target
    log(f"  comp: ADDA {acc['comp_adda']:.2f}%, moment matching {acc['comp_m3sda']:.2f}%, "
        f"supervised {acc['comp_supervised']:.2f}%")

    if table9:
        ft_lr, ft_bn = rows.chosen("supervised", ft_lrs[0]), rows.chosen_bn("supervised")
        learned, coef = learned_init(model, train, names, steps=cfg.learned_steps, batch_size=cfg.adapt_batch,
                                     target_bn=cfg.target_bn, seed=seed, out_dir=_sub(work, "learned_init"))
        info["learned_coefficients"] = coef
        rows.restore()
        inits = {"random": random_init(model, seed=seed + 1000), "accuracy": accuracy_init(model, by_acc),
                 "learned": learned}
        for kind, logits in inits.items():
            model.set_logits(t, logits)
            acc[f"init:{kind}"] = accuracy(model, target_test, t)
            rows.restore()
            acc[f"ft:{kind}"] = rows.row(f"ft_{kind}", "supervised", (ft_lr,), (ft_bn,), logits=logits)
        acc["init:copy"], acc["ft:copy"] = acc["comp_source_only"], acc["comp_supervised"]
    info["selection"] = rows.selection
    return {"acc": acc, "params": params, "info": info}


def run_isometric(model: IsometricDA, sources: Sequence[Domain], target_train: Domain, target_test: Domain,
                  source_tests: Sequence[Domain], cfg: AdaptConfig, *, seed: int = 0,
                  log: Callable[[str], None] = print, work: Path | None = None) -> dict[str, Any]:
    """The plain isometric baseline for one seed: source-only, and ADDA / moment matching / supervised
    fine-tuning of the target's own input adapter (learning rates chosen as for the compositional rows)."""
    check_domains(list(sources) + [target_train])
    check_domains(list(sources) + [target_train, target_test] + list(source_tests), distinct=False)
    t = target_train.name
    train, val = split_target(target_train, cfg.val_size)
    acc: dict[str, float] = {}
    params: dict[str, int] = {}
    log(f"  isometric: training on {len(sources)} sources ({cfg.pretrain_steps} steps)")
    train_sources(model, sources, steps=cfg.pretrain_steps, batch_size=cfg.batch_size, lr=cfg.lr,
                  final_lr=cfg.final_lr, weight_decay=cfg.weight_decay, seed=seed, out_dir=_sub(work, "pretrain"))
    params["pretrain"] = count_parameters(model.parameters())
    for d in source_tests:
        acc[f"source:{d.name}"] = accuracy(model, d)
    model.add_target(t)
    rows = _Rows(model, sources, train, val, target_test, cfg, seed, work)
    n_target = count_parameters(model.target_parameters(t).values())
    acc["source_only"], params["source_only"] = accuracy(model, target_test, t), params["pretrain"]
    bns = cfg.bn_grid or (cfg.target_bn,)
    for kind in ("adda", "m3sda"):
        acc[f"ia_{kind}"] = rows.row(kind, kind, cfg.lr_grid or (cfg.lr_adapter,), bns)
    acc["ia_supervised"] = rows.row("supervised", "supervised", cfg.ft_lr_grid or (cfg.lr_adapter,), bns)
    params["ia_adda"] = params["ia_m3sda"] = params["ia_supervised"] = n_target
    log(f"  isometric: source-only {acc['source_only']:.2f}%, ADDA (IA) {acc['ia_adda']:.2f}%, "
        f"moment matching (IA) {acc['ia_m3sda']:.2f}%, supervised (IA) {acc['ia_supervised']:.2f}%")
    return {"acc": acc, "params": params, "info": {"selection": rows.selection}}
