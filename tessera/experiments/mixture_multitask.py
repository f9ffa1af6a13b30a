"""``tessera reproduce mixture-multitask``: paper 002 Fig. 2b, nine digit tasks sharing a template bank.

Tasks: MNIST, Fashion-MNIST and KMNIST x {original, boundary, blur}. Each dataset's *test* split
(KMNIST's train images are not available offline) is split into a training part and a held-out part
(``n_eval`` images) for evaluation; the three augmentations of a dataset use the same images.

Rows (co-trained round robin, same steps): the shared isometric baseline (one body, per-task heads
and BN statistics) and template-mixture networks with per-task mixture weights and mixed BN (the
"MW" row of Table 8) with the paper's remedies: K = L or K = 2L templates, random N(0, 1) or "diag"
((xi_l)_k ~ delta_{l,k}, Table 8) mixture-logit init, and the clustering regularizer (§3.2) at a
strength chosen per init by a sweep scored on validation data held out from the *training* part
(never the evaluation part; see :mod:`.mixture_alpha`).

Self-organization (do tasks share templates?): per layer, the fraction of task pairs using the same
argmax template, for pairs with the same augmentation (Fig. 2b: they share early layers) and pairs
from the same dataset (Fig. 2b: they share late layers); how many choices moved from their init;
a heatmap PNG per mixture row (seed 0).

Ours vs the paper: MNIST / Fashion-MNIST / KMNIST (paper: EMNIST / MNIST / KMNIST), 28x28 grey,
4x4 patch, 24 channels, L = 8 layers, a few epochs with Adam (paper: unstated depth, full training).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..results import Report, format_table
from . import RunOptions
from ..threads import intra_op_threads
from .mixture_alpha import ALPHAS, add_sweep_rows, choose_alphas, split_val, unit_key
from .mixture_common import Model, add_organization_rows, digit_pair_kind, domain_tasks, mean, train_row
from .units import Units

__all__ = ["run", "BUDGETS", "ROWS", "sharing"]

DATASETS = ("mnist", "fashion_mnist", "kmnist")
KINDS = ("original", "boundary", "blur")
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(depth=4, steps=270, batch=32, n_train=800, n_eval=300, recalibrate=5, n_val=100, ckpt=100,
                  score_train=300),
    "default": dict(depth=8, steps=3000, batch=64, n_train=8000, n_eval=2000, recalibrate=0, n_val=1000, ckpt=300,
                    score_train=2000),
    "paper": dict(depth=16, steps=18000, batch=128, n_train=8000, n_eval=2000, recalibrate=0, n_val=1000,
                  ckpt=1000, score_train=2000),
}
ARCH = dict(channels=24, patch=4, head_channels=(128, 256), dropout=0.2)
SEEDS = {"quick": 1, "default": 3, "paper": 3}
ROWS: tuple[Model, ...] = (
    Model("baseline", "baseline"),
    Model("MW random K=L", "mixture", 1, "random"),      # the earlier recipe (K = 9, random init)
    Model("MW diag K=2L", "mixture", 2, "diag"),         # the paper's remedies (Table 8)
)
"""Default rows; ``Model("MW random K=2L", "mixture", 2, "random")`` etc. can be added (``rows=``)."""


def sharing(weights: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per layer, the fraction of task pairs using the same argmax template, by Fig. 2b's pair type."""
    from ..mixture import layer_sharing

    s = layer_sharing(weights, digit_pair_kind)
    return {k: s[k]["same_template"] for k in ("same_augmentation", "same_dataset", "unrelated") if k in s}


@intra_op_threads(1)  # small ops: one thread is as fast, and far faster on a busy CPU
def run(opts: RunOptions, rows: Sequence[Model] = ROWS, alphas: Sequence[float] = ALPHAS,
        alpha: float | None = None) -> dict[str, Any]:
    """Run the experiment; ``alpha`` fixes the clustering strength (no sweep)."""
    from ..mixture import export, max_difference

    b = dict(BUDGETS.get(opts.budget, BUDGETS["default"]))
    seeds = opts.seeds if opts.seeds is not None else SEEDS.get(opts.budget, 3)
    out = opts.out / "mixture-multitask"
    # one fixed data split; the seed varies initialization and batch order
    tasks = domain_tasks(DATASETS, KINDS, root=opts.data_root, n_eval=b["n_eval"], n_train=b["n_train"],
                         size=b.get("size", 28), seed=0)
    heads = {t: 10 for t in tasks}
    fit, val = split_val(tasks, b["n_val"])          # every model trains on the same n_train - n_val images
    rep = Report("mixture-multitask", config={**b, **ARCH, "datasets": DATASETS, "augmentations": KINDS,
                                              "seeds": seeds, "data_split_seed": 0,
                                              "split": "test split: train part (its last n_val validate) + "
                                                       "held-out eval part",
                                              "optimizer": "adam lr 2e-3 cosine, mixture logits x10, EMA 0.99",
                                              "rows": {r.label: r.describe() for r in rows},
                                              "threads": torch.get_num_threads()})
    units = Units(opts, "mixture-multitask", dict(**b, device=opts.device, arch=ARCH))

    def one(work: Any, row: Model, alpha: float, seed: int) -> dict[str, Any]:
        net, res = train_row(work, row, seed, fit, val, heads, b, ARCH, alpha, opts.device)
        if row.mixture:
            t0 = next(iter(tasks))
            res["export_max_diff"] = max_difference(net, export(net, t0), tasks[t0][2][:64], t0)
        return res

    def run_unit(row: Model, alpha: float, seed: int) -> dict[str, Any]:
        return units.run(unit_key(row, alpha, seed), lambda work: one(work, row, alpha, seed))

    alpha_of, sweeps = choose_alphas(rows, run_unit, alphas, alpha)
    add_sweep_rows(rep, sweeps, b["steps"])
    rep.config["clustering_alpha"] = alpha_of
    results: dict[str, list[dict[str, Any]]] = {r.label: [] for r in rows}
    for seed in range(seeds):
        for row in rows:
            results[row.label].append(run_unit(row, alpha_of.get(row.init, 0.0) if row.mixture else 0.0, seed))
    base = rows[0].label
    for t in tasks:
        for row in rows:
            rep.add_row(setting=t, method=row.label, metric="accuracy",
                        values=[100 * r["acc"][t] for r in results[row.label]], paper=None,
                        dataset=t.rsplit("-", 1)[0], augmentation=t.rsplit("-", 1)[1])
    for row in rows:
        runs = results[row.label]
        rep.add_row(setting="mean over 9 tasks", method=row.label, metric="accuracy",
                    values=[100 * mean(r["acc"].values()) for r in runs], paper=None,
                    train_seconds=round(mean(r["train_seconds"] for r in runs), 1))
        rep.add_row(setting="mean over 9 tasks, training images", method=row.label, metric="train accuracy",
                    values=[100 * mean(r["train_acc"].values()) for r in runs], paper=None)
    for row in rows[1:]:
        if seeds > 1:
            rep.add_row(setting="mean over 9 tasks", method=f"{row.label} - {base} (paired by seed)",
                        metric="accuracy", paper=None,
                        values=[100 * (mean(m["acc"].values()) - mean(bl["acc"].values()))
                                for m, bl in zip(results[row.label], results[base])])
    organization: dict[str, Any] = {}
    for row in rows:
        if row.mixture:
            organization[row.label] = add_organization_rows(
                rep, row, results[row.label], out, "9 tasks x layers", digit_pair_kind,
                ("same_augmentation", "same_dataset", "unrelated"))
            organization[row.label]["export_max_diff"] = max(r["export_max_diff"] for r in results[row.label])
    rep.config["self_organization"] = organization
    print(format_table(rep.rows, ["setting", "method", "mean", "stderr", "n"]))
    return rep.write(opts.json)
