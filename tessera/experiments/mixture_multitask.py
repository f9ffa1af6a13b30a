"""``tessera reproduce mixture-multitask``: paper 002 Fig. 2b, nine digit tasks sharing nine templates.

Tasks: MNIST, Fashion-MNIST and KMNIST x {original, boundary, blur}. Each dataset's *test* split
(KMNIST's train images are not available offline) is split into a training part and a held-out part
(``n_eval`` images) for evaluation; the three augmentations of a dataset use the same images.
Models (co-trained round robin, same steps): a template-mixture network with K = 9 templates,
per-task mixture weights and mixed BN ("mixture" variant of Table 8), and the shared isometric
baseline (one body for all tasks, per-task heads and BN statistics). Rows: per-task accuracy of
both; the heatmap PNG shows which layers the tasks share. ``config.sharing`` measures the paper's
reading of Fig. 2b: how often two tasks use the same template in a layer, for pairs with the same
augmentation (paper: shared early layers) and pairs from the same dataset (paper: shared late layers).

Ours vs the paper: MNIST / Fashion-MNIST / KMNIST (paper: EMNIST / MNIST / KMNIST), 28x28 grey,
4x4 patch, 24 channels, L = 8 layers, a few epochs with Adam (paper: unstated depth, full training).
"""
from __future__ import annotations

import itertools
from typing import Any

import torch

from ..results import Report, format_table
from . import RunOptions
from .mixture_common import domain_tasks
from .units import Units

__all__ = ["run", "BUDGETS", "sharing"]

DATASETS = ("mnist", "fashion_mnist", "kmnist")
KINDS = ("original", "boundary", "blur")
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(depth=4, templates=9, steps=270, batch=32, n_train=800, n_eval=300, recalibrate=5),
    "default": dict(depth=8, templates=9, steps=2700, batch=64, n_train=8000, n_eval=2000, recalibrate=0),
    "paper": dict(depth=16, templates=9, steps=18000, batch=128, n_train=8000, n_eval=2000, recalibrate=0),
}
ARCH = dict(channels=24, patch=4, head_channels=(128, 256), dropout=0.2)
SEEDS = {"quick": 1, "default": 3, "paper": 3}


def sharing(weights: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per layer, the fraction of task pairs using the same argmax template, by pair type."""
    sig = {t: w.argmax(-1) for t, w in weights.items()}
    depth = len(next(iter(sig.values())))
    out: dict[str, list[float]] = {"same_augmentation": [], "same_dataset": [], "unrelated": []}
    pairs = list(itertools.combinations(sig, 2))
    for l in range(depth):
        acc: dict[str, list[int]] = {k: [] for k in out}
        for a, b in pairs:
            da, ka = a.rsplit("-", 1)
            db, kb = b.rsplit("-", 1)
            kind = "same_augmentation" if ka == kb else "same_dataset" if da == db else "unrelated"
            acc[kind].append(int(sig[a][l] == sig[b][l]))
        for k in out:
            out[k].append(round(sum(acc[k]) / max(1, len(acc[k])), 3))
    return out


def run(opts: RunOptions) -> dict[str, Any]:
    from ..mixture import (collapse, max_difference, mixture_clustering, multitask_model, plot_mixture_weights,
                           train_tasks)

    b = dict(BUDGETS.get(opts.budget, BUDGETS["default"]))
    seeds = opts.seeds if opts.seeds is not None else SEEDS.get(opts.budget, 3)
    alpha = 0.01
    out = opts.out / "mixture-multitask"
    rep = Report("mixture-multitask", config={**b, **ARCH, "datasets": DATASETS, "augmentations": KINDS,
                                              "seeds": seeds, "data_split_seed": 0,
                                              "split": "test split: train part + held-out eval part",
                                              "optimizer": "adam lr 2e-3 cosine, mixture logits x10, EMA 0.99",
                                              "clustering_alpha": alpha, "threads": torch.get_num_threads()})
    # one fixed data split; the seed varies initialization and batch order
    tasks = domain_tasks(DATASETS, KINDS, root=opts.data_root, n_eval=b["n_eval"], n_train=b["n_train"], seed=0)
    heads = {t: 10 for t in tasks}
    results: dict[str, list[dict[str, Any]]] = {"baseline": [], "mixture": []}
    units = Units(opts, "mixture-multitask", dict(**b, alpha=alpha, device=opts.device))
    for seed in range(seeds):
        for variant in results:
            def one(work: Any, variant: str = variant, seed: int = seed) -> dict[str, Any]:
                torch.manual_seed(seed)
                net = multitask_model(variant, heads, depth=b["depth"], num_templates=b["templates"], seed=seed,
                                      **ARCH)
                reg = (lambda t: mixture_clustering(net, t, alpha=alpha)) if variant == "mixture" else None
                res = train_tasks(net, tasks, steps=b["steps"], batch=b["batch"], seed=seed, device=opts.device,
                                  regularizer=reg, recalibrate=b["recalibrate"], out_dir=work / "train",
                                  checkpoint_every=b.get("checkpoint_every", 500))
                res["weights"] = {t: w.tolist() for t, w in net.mixture_weights().items()}
                t0 = next(iter(tasks))
                res["collapse_max_diff"] = max_difference(net, collapse(net, t0), tasks[t0][2][:64], t0)
                return res
            results[variant].append(units.run((variant, f"seed{seed}"), one))
    for t in tasks:
        for variant, runs in results.items():
            rep.add_row(setting=t, method=variant, metric="accuracy", values=[100 * r["acc"][t] for r in runs],
                        paper=None, dataset=t.rsplit("-", 1)[0], augmentation=t.rsplit("-", 1)[1])
    for variant, runs in results.items():
        rep.add_row(setting="mean over 9 tasks", method=variant, metric="accuracy",
                    values=[100 * sum(r["acc"].values()) / len(r["acc"]) for r in runs], paper=None,
                    train_seconds=round(sum(r["train_seconds"] for r in runs) / len(runs), 1))
    if seeds > 1:
        rep.add_row(setting="mean over 9 tasks", method="mixture - baseline (paired by seed)", metric="accuracy",
                    values=[100 * (sum(m["acc"].values()) - sum(bl["acc"].values())) / len(m["acc"])
                            for m, bl in zip(results["mixture"], results["baseline"])], paper=None)
    # the heatmap, signatures and sharing statistics are those of seed 0
    weights = {t: torch.tensor(w) for t, w in results["mixture"][0]["weights"].items()}
    png = plot_mixture_weights(weights, out / "mixture_weights.png",
                               title="mixture weights: 9 tasks x layers (colour = template)")
    rep.config["heatmap"] = str(png)
    rep.config["sharing"] = sharing(weights)
    rep.config["signatures"] = {t: w.argmax(-1).tolist() for t, w in weights.items()}
    rep.config["mean_confidence"] = round(float(torch.stack(list(weights.values())).max(-1).values.mean()), 4)
    rep.config["collapse_max_diff"] = max(r["collapse_max_diff"] for r in results["mixture"])
    print(format_table(rep.rows, ["setting", "method", "mean", "stderr", "n"]))
    print("template sharing per layer:", rep.config["sharing"])
    return rep.write(opts.json)
