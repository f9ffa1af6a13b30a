"""``tessera reproduce mixture-variants``: paper 002 Table 8 and Table 10 analogs on five digit-like datasets.

Table 8: MNIST, Fashion-MNIST, KMNIST, USPS and corrupted MNIST (see :mod:`.mixture_data`) are
co-trained round robin by each multi-task variant of the table: the simple baseline (one shared
isometric body, per-task heads and BN statistics), the baseline with linear patches (per-task BN
gamma/beta), mixture weights (MW, mixed BN) with K = L and K = 2L templates, MW with patches with
K = L and 2L, and MW with patches and "diag" init ((xi_l)_k ~ delta_{l,k}) with K = L and 2L.
Rows: held-out accuracy per dataset, its mean over the five, and the aggregated training
cross-entropy L_CE (sum over the datasets of the mean cross-entropy on their training images).
The clustering regularizer's strength is chosen per mixture init by a sweep scored on validation data
held out from the training parts (seed 0, full runs; :mod:`.mixture_alpha`).

Table 10: every with-patches model is then transferred to three held-out datasets (UCI digits,
Fashion-MNIST boundary images, rotated MNIST) by fine-tuning logits and BN (baseline) or mixture
weights, BN and logits (MW), starting from the co-trained task that scores best on the target's
training images (mixture weights, BN and head copied from it).

Ours vs the paper: 28x28 grey digit-like datasets (paper: CIFAR-100, Food-101, ImageNet, Places365,
SUN397 for Table 8; Stanford Dogs, Aircraft, CIFAR-10, Cars196, EMNIST for Table 10), L = 8
(paper: 16), 24 channels, Adam for a few epochs (paper: RMSProp, full training).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..results import Report, format_table
from . import RunOptions
from ..threads import intra_op_threads
from .mixture_alpha import ALPHAS, add_sweep_rows, choose_alphas, split_val, unit_key
from .mixture_common import Model, add_organization_rows, mean, train_row, transfer_from_best
from .mixture_data import CORRUPTION, DATASETS, TARGETS, five_datasets
from .units import Units

__all__ = ["run", "BUDGETS", "ROWS", "PAPER_TABLE8", "PAPER_TABLE10"]

ARCH = dict(channels=24, patch=4, head_channels=(128, 256), dropout=0.2)
SEEDS = {"quick": 1, "default": 3, "paper": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(depth=4, steps=300, batch=32, n_train=600, n_eval=300, t_train=300, t_eval=300, ft_steps=30,
                  n_val=100, ckpt=100, score_train=300),
    "default": dict(depth=8, steps=1600, batch=64, n_train=7000, n_eval=2000, t_train=2000, t_eval=2000,
                    ft_steps=150, n_val=1000, ckpt=200, score_train=2000),
    "paper": dict(depth=16, steps=16000, batch=128, n_train=7000, n_eval=2000, t_train=2000, t_eval=2000,
                  ft_steps=2000, n_val=1000, ckpt=1000, score_train=2000),
}
ROWS: tuple[Model, ...] = (
    Model("simple baseline", "baseline"),
    Model("baseline with patches", "baseline_patches"),
    Model("MW K=L", "mixture", 1, "random"),
    Model("MW K=2L", "mixture", 2, "random"),
    Model("MW with patches K=L", "mixture_patches", 1, "random"),
    Model("MW with patches K=2L", "mixture_patches", 2, "random"),
    Model("MW with patches, diag, K=L", "mixture_patches", 1, "diag"),
    Model("MW with patches, diag, K=2L", "mixture_patches", 2, "diag"),
)
# paper 002 Table 8 (L = 16: K = L is 16, K = 2L is 32): validation accuracy CIFAR / FOOD / IMAGENET /
# PLACES / SUN and L_CE; the table has no "MW K = 16" row.
PAPER_TABLE8: dict[str, tuple[tuple[float, ...], float]] = {
    "simple baseline": ((77.0, 70.4, 61.1, 48.6, 61.3), 4.59),
    "baseline with patches": ((76.8, 71.3, 61.8, 49.2, 60.0), 4.48),
    "MW K=2L": ((76.6, 71.9, 63.1, 48.7, 58.8), 4.29),
    "MW with patches K=L": ((74.9, 70.3, 60.9, 48.3, 58.8), 4.6),
    "MW with patches K=2L": ((74.9, 70.3, 62.7, 48.8, 58.0), 4.4),
    "MW with patches, diag, K=L": ((77.3, 71.1, 62.1, 48.9, 59.9), 4.48),
    "MW with patches, diag, K=2L": ((77.7, 71.7, 62.3, 49.3, 60.0), 4.4),
}
# paper 002 Table 10: EMNIST / AIRCRAFT / CIFAR-10 / STANFORD DOGS / CARS196 (its EMNIST and CIFAR-10
# rows are identical in the paper)
PAPER_TABLE10: dict[str, tuple[float, ...]] = {
    "baseline with patches": (93.5, 42.8, 93.5, 63.2, 57.5),
    "MW with patches K=L": (93.7, 46.9, 93.7, 64.0, 63.4),
    "MW with patches K=2L": (93.1, 43.1, 93.1, 67.5, 63.1),
}


@intra_op_threads(1)  # small ops: one thread is as fast, and far faster on a busy CPU
def run(opts: RunOptions, rows: Sequence[Model] = ROWS, alphas: Sequence[float] = ALPHAS,
        alpha: float | None = None) -> dict[str, Any]:
    """Run the experiment; ``alpha`` fixes the clustering strength (no sweep)."""
    from ..mixture import source_accuracies

    b = dict(BUDGETS.get(opts.budget, BUDGETS["default"]))
    seeds = opts.seeds if opts.seeds is not None else SEEDS.get(opts.budget, 3)
    out = opts.out / "mixture-variants"
    tasks, targets = five_datasets(opts.data_root, n_train=b["n_train"], n_eval=b["n_eval"], t_train=b["t_train"],
                                   t_eval=b["t_eval"], size=b.get("size", 28), seed=0)
    heads = {t: 10 for t in tasks}
    fit, val = split_val(tasks, b["n_val"])          # every model trains on the same n_train - n_val images
    rep = Report("mixture-variants", config={**b, **ARCH, "datasets": list(DATASETS), "corruption": CORRUPTION,
                                             "targets": list(TARGETS), "seeds": seeds, "data_split_seed": 0,
                                             "rows": {r.label: r.describe() for r in rows},
                                             "optimizer": "adam lr 2e-3 cosine, mixture logits x10, EMA 0.99",
                                             "threads": torch.get_num_threads()})
    cfg = dict(**b, device=opts.device, arch=ARCH)
    pre_units = Units(opts, "mixture-variants", cfg, keep_work=True)    # the transfers load its checkpoints
    units = Units(opts, "mixture-variants", cfg)

    def pretrain_unit(row: Model, alpha: float, seed: int) -> dict[str, Any]:
        return pre_units.run(unit_key(row, alpha, seed),
                             lambda work: train_row(work, row, seed, fit, val, heads, b, ARCH, alpha, opts.device)[1])

    def transfers(work: Any, row: Model, alpha: float, seed: int) -> dict[str, Any]:
        """Table 10: transfer to each held-out dataset from the best co-trained task."""
        net, _ = train_row(work, row, seed, fit, val, heads, b, ARCH, alpha, opts.device,
                           out_dir=pre_units.workdir(unit_key(row, alpha, seed)) / "train")   # reloaded, not retrained
        res = {}
        for i, (name, data) in enumerate(targets.items()):
            accs = source_accuracies(net, list(tasks), data[0][:1000], data[1][:1000])
            res[name] = transfer_from_best(
                net, data, accs, ("mixture", "bn", "logits") if row.mixture else ("bn", "logits"),
                steps=b["ft_steps"], batch=b["batch"], seed=seed, salt=i, device=opts.device,
                out_dir=work / f"transfer_{i}", checkpoint_every=b["ckpt"])
        return res

    alpha_of, sweeps = choose_alphas(rows, pretrain_unit, alphas, alpha)
    add_sweep_rows(rep, sweeps, b["steps"])
    rep.config["clustering_alpha"] = alpha_of
    results: dict[str, list[dict[str, Any]]] = {r.label: [] for r in rows}
    for seed in range(seeds):   # one fixed data split; the seed varies initialization and batch order
        for row in rows:
            a = alpha_of.get(row.init, 0.0) if row.mixture else 0.0
            res = dict(pretrain_unit(row, a, seed))
            if row.variant.endswith("patches"):     # per-task BN: the Table 10 transfers
                res["transfer"] = units.run((*unit_key(row, a, seed), "transfer"),
                                            lambda work, row=row, a=a, seed=seed: transfers(work, row, a, seed))
            results[row.label].append(res)
    _table8(rep, rows, results, tasks)
    _table10(rep, rows, results, targets)
    rep.config["self_organization"] = {
        row.label: add_organization_rows(rep, row, results[row.label], out, "5 datasets x layers")
        for row in rows if row.mixture}
    print(format_table([r for r in rep.rows if not r["setting"].startswith(("template", "layer"))],
                       ["setting", "method", "mean", "stderr", "n", "paper"]))
    return rep.write(opts.json)


def _table8(rep: Report, rows: Sequence[Model], results: dict[str, list[dict[str, Any]]], tasks: Any) -> None:
    base = rows[0].label
    for t in tasks:
        for row in rows:
            rep.add_row(setting=t, method=row.label, metric="accuracy", paper=None,
                        values=[100 * r["acc"][t] for r in results[row.label]])
    for row in rows:
        runs = results[row.label]
        paper = PAPER_TABLE8.get(row.label)
        rep.add_row(setting="mean over 5 datasets", method=row.label, metric="accuracy",
                    values=[100 * mean(r["acc"].values()) for r in runs],
                    paper=round(mean(paper[0]), 2) if paper else None,
                    train_seconds=round(mean(r["train_seconds"] for r in runs), 1))
        rep.add_row(setting="L_CE: training cross-entropy summed over 5 datasets", method=row.label,
                    metric="cross-entropy", lower_is_better=True,
                    values=[sum(r["train_loss"].values()) for r in runs], paper=paper[1] if paper else None)
        rep.add_row(setting="mean over 5 datasets, training images", method=row.label, metric="train accuracy",
                    values=[100 * mean(r["train_acc"].values()) for r in runs], paper=None)
    base_runs = results[base]
    for row in rows[1:]:
        diffs = [100 * (mean(m["acc"].values()) - mean(bl["acc"].values()))
                 for m, bl in zip(results[row.label], base_runs)]
        if len(diffs) > 1:
            p, pb = PAPER_TABLE8.get(row.label), PAPER_TABLE8.get(base)
            rep.add_row(setting="mean over 5 datasets", method=f"{row.label} - {base} (paired by seed)",
                        metric="accuracy", values=diffs,
                        paper=round(mean(p[0]) - mean(pb[0]), 2) if p and pb else None)


def _table10(rep: Report, rows: Sequence[Model], results: dict[str, list[dict[str, Any]]], targets: Any) -> None:
    for row in rows:
        runs = [r for r in results[row.label] if "transfer" in r]
        if not runs:
            continue
        paper = PAPER_TABLE10.get(row.label)
        for t in targets:
            rs = [r["transfer"][t] for r in runs]
            rep.add_row(setting=f"transfer to {t}", method=row.label, metric="accuracy", paper=None,
                        values=[100 * x["acc"] for x in rs], init_accuracy=round(100 * mean(x["init"] for x in rs), 2),
                        sources=[x["source"] for x in rs], trained_params=rs[0]["trained_params"])
        rep.add_row(setting="transfer, mean over 3 held-out datasets", method=row.label, metric="accuracy",
                    values=[100 * mean(r["transfer"][t]["acc"] for t in targets) for r in runs],
                    paper=round(mean(paper), 2) if paper else None)
