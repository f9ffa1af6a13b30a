"""``tessera reproduce mixture-transfer``: paper 002 Table 2 / Table 9 analog on digit tasks.

Templates (and adapters) are trained on 8 of the 9 digit tasks of ``mixture-multitask`` (MNIST,
Fashion-MNIST, KMNIST x original / boundary / blur); the held-out task (default ``kmnist-blur``) is
then learned by fine-tuning its mixture weights, BN gamma/beta (per-task "patches") and logits, with
the mixture weights initialized from each source task (Table 2 columns), from the accuracy-based
interpolation and from the learned interpolation (Table 9, App. C Eq. 1), or at random. The baseline
is a shared isometric network co-trained on the same sources with per-task BN and heads ("baseline
with patches", Table 8), transferred by fine-tuning logits and BN only (the paper's Table 2 baseline).

Pretrained mixture (``PRETRAIN``): the paper's remedies, "diag" init with K = 2L templates, with the
full set of transfer inits; further pretrained mixtures (e.g. ``RANDOM_K_L``, the earlier recipe:
random init, K = L) transfer from the same-label source, with and without tuning the mixture weights.
The clustering strength of each mixture init is chosen by a sweep scored on validation data held out
from the sources' training parts (:mod:`.mixture_alpha`).

All transferred heads start from the head of the source task with the same label set (App. C
assumes shared labels), so the "init" accuracy (before fine-tuning) is meaningful. Accuracy-based
coefficients use each source's accuracy on the target's training part minus chance (10%), clipped
at 0: sources with other label sets score at chance (ours; the paper's formula is a_v / sum a).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..results import Report, format_table
from ..train import mix_seed
from . import RunOptions
from ..threads import intra_op_threads
from .mixture_alpha import ALPHAS, add_sweep_rows, choose_alphas, split_val, unit_key
from .mixture_common import Model, domain_tasks, train_row
from .units import Units

__all__ = ["run", "BUDGETS", "PRETRAIN", "RANDOM_K_L"]

DATASETS = ("mnist", "fashion_mnist", "kmnist")
KINDS = ("original", "boundary", "blur")
ARCH = dict(channels=24, patch=4, head_channels=(128, 256), dropout=0.2)
SEEDS = {"quick": 1, "default": 3, "paper": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(depth=4, steps=180, ft_steps=30, learn_steps=15, batch=32, n_train=800, n_eval=300,
                  recalibrate=5, sources_to_try=2, n_val=100, ckpt=60),
    "default": dict(depth=8, steps=2400, ft_steps=200, learn_steps=100, batch=64, n_train=8000, n_eval=2000,
                    recalibrate=0, sources_to_try=8, n_val=1000, ckpt=300),
    "paper": dict(depth=16, steps=16000, ft_steps=2000, learn_steps=300, batch=128, n_train=8000, n_eval=2000,
                  recalibrate=0, sources_to_try=8, n_val=1000, ckpt=1000),
}
BASELINE = Model("baseline with patches", "baseline_patches")
PRETRAIN: tuple[Model, ...] = (
    Model("MW diag K=2L", "mixture_patches", 2, "diag"),        # the paper's remedies: full set of transfer inits
)
"""Default pretrained mixtures; more rows (e.g. ``RANDOM_K_L``, the earlier recipe) transfer from the
same-label source only, with and without tuning the mixture weights."""
RANDOM_K_L = Model("MW random K=L", "mixture_patches", 1, "random")


@intra_op_threads(1)  # small ops: one thread is as fast, and far faster on a busy CPU
def run(opts: RunOptions, target: str = "kmnist-blur", pretrain: Sequence[Model] = PRETRAIN,
        alphas: Sequence[float] = ALPHAS, alpha: float | None = None) -> dict[str, Any]:
    """Run the experiment; the first of ``pretrain`` gets every transfer init; ``alpha`` skips the sweep.

    Each pretrained mixture needs per-task BN (variant ``mixture_patches``) and its own init.
    """
    from ..mixture import (accuracy, accuracy_coefficients, count_parameters, from_source, init_logits, interpolate,
                           learn_interpolation, source_accuracies, train_tasks, trainable_parameters)

    b = dict(BUDGETS.get(opts.budget, BUDGETS["default"]))
    seeds = opts.seeds if opts.seeds is not None else SEEDS.get(opts.budget, 3)
    tasks = domain_tasks(DATASETS, KINDS, root=opts.data_root, n_eval=b["n_eval"], n_train=b["n_train"],
                         size=b.get("size", 28), seed=0)
    if target not in tasks:
        from ..errors import ConfigError
        raise ConfigError(f"unknown target {target!r}; choose one of: {', '.join(tasks)}")
    sources = {t: d for t, d in tasks.items() if t != target}
    heads = {t: 10 for t in sources}
    label_src = f"{target.rsplit('-', 1)[0]}-original"         # same label set as the target
    xt, yt, xe, ye = tasks[target]
    rows = (BASELINE, *pretrain)
    rep = Report("mixture-transfer", config={**b, **ARCH, "target": target, "sources": list(sources),
                                             "head_init": label_src, "seeds": seeds, "data_split_seed": 0,
                                             "pretrained": {r.label: r.describe() for r in rows},
                                             "threads": torch.get_num_threads()})
    fit, val = split_val(sources, b["n_val"])        # every model trains on the same n_train - n_val images
    cfg = dict(target=target, **b, device=opts.device, arch=ARCH)
    pre_units = Units(opts, "mixture-transfer", cfg, keep_work=True)    # the transfers load its checkpoints
    units = Units(opts, "mixture-transfer", cfg)

    def pretrain_unit(row: Model, alpha: float, seed: int) -> dict[str, Any]:
        return pre_units.run(unit_key(row, alpha, seed),
                             lambda work: train_row(work, row, seed, fit, val, heads, b, ARCH, alpha, opts.device)[1])

    def one(work: Any, row: Model, alpha: float, seed: int, full: bool) -> dict[str, Any]:
        net, res = train_row(work, row, seed, fit, val, heads, b, ARCH, alpha, opts.device,
                             out_dir=pre_units.workdir(unit_key(row, alpha, seed)) / "train")   # reloaded, not retrained
        state = {k: v.clone() for k, v in net.state_dict().items()}
        runs: dict[str, Any] = {"source_acc": res["acc"]}
        count = iter(range(1000))

        def transfer(name: str, what: tuple[str, ...], prepare) -> dict[str, Any]:
            net.load_state_dict(state, strict=False)
            torch.manual_seed(mix_seed(seed, next(count)))       # dropout of this run, whatever ran before
            prepare(net, name)
            init_acc = accuracy(net, name, xe, ye)
            flags = {p: p.requires_grad for p in net.parameters()}
            params = trainable_parameters(net, name, what)
            n_params = count_parameters(params)
            r = train_tasks(net, {name: tasks[target]}, steps=b["ft_steps"], batch=b["batch"], seed=seed,
                            device=opts.device, params=params, ema=0.0, recalibrate=b["recalibrate"],
                            out_dir=work / name, checkpoint_every=b["ckpt"])
            for p, f in flags.items():
                p.requires_grad_(f)
            return {"init": init_acc, "acc": r["acc"][name], "trained_params": n_params}

        def add_from(src: str):
            def prep(n, name):
                from_source(n, name, src, num_classes=10)
                n.heads[name].load_state_dict(n.heads[label_src].state_dict())
            return prep
        if not row.mixture:
            runs["baseline (logits+BN)"] = transfer("t_base", ("bn", "logits"), add_from(label_src))
            return runs
        accs = source_accuracies(net, list(sources), xt[:1000], yt[:1000])
        runs["source_acc_on_target"] = accs
        order = sorted(sources, key=lambda s: (s != label_src, -accs[s]))[:b["sources_to_try"] if full else 1]
        for i, src in enumerate(order):
            runs[f"MW init {src}"] = transfer(f"t_src{i}", ("mixture", "bn", "logits"), add_from(src))
        runs[f"MW init {label_src} (no MW tuning)"] = transfer("t_fixed", ("bn", "logits"), add_from(label_src))
        if not full:
            return runs
        coeffs = accuracy_coefficients(accs, chance=0.1)
        runs["coeffs_accuracy"] = coeffs

        def prep_acc(n, name):
            interpolate(n, name, coeffs, num_classes=10, copy_head_from=label_src)
        runs["MW accuracy-based interpolation"] = transfer("t_acc", ("mixture", "bn", "logits"), prep_acc)
        learned: dict[str, float] = {}

        def prep_learned(n, name):
            interpolate(n, name, {s: 1.0 for s in sources}, num_classes=10, copy_head_from=label_src)
            learned.update(learn_interpolation(n, name, list(sources), xt, yt, steps=b["learn_steps"], lr=0.1,
                                               batch_size=b["batch"], seed=seed, out_dir=work / "learn"))
        runs["MW learned interpolation"] = transfer("t_learn", ("mixture", "bn", "logits"), prep_learned)
        runs["coeffs_learned"] = learned

        def prep_rand(n, name):
            add_from(label_src)(n, name)
            with torch.no_grad():
                n.mixture[name].copy_(init_logits(n.depth, n.num_templates, "random", seed=seed))
        runs["MW random init"] = transfer("t_rand", ("mixture", "bn", "logits"), prep_rand)
        return runs

    alpha_of, sweeps = choose_alphas(rows, pretrain_unit, alphas, alpha)
    add_sweep_rows(rep, sweeps, b["steps"])
    rep.config["clustering_alpha"] = alpha_of
    results: dict[str, list[dict[str, Any]]] = {r.label: [] for r in rows}
    for seed in range(seeds):  # one fixed data split; the seed varies initialization and batch order
        for i, row in enumerate(rows):
            a = alpha_of.get(row.init, 0.0) if row.mixture else 0.0
            pretrain_unit(row, a, seed)
            results[row.label].append(units.run((*unit_key(row, a, seed), "transfer"),
                                                lambda work, row=row, a=a, seed=seed, full=i == 1:
                                                one(work, row, a, seed, full)))

    for row in rows:
        per_seed = results[row.label]
        # which sources are tried depends on each seed's ranking: a row averages the seeds that tried it
        methods = list(dict.fromkeys(m for runs in per_seed for m, r in runs.items()
                                     if isinstance(r, dict) and "acc" in r))
        for method in methods:
            rs = [runs[method] for runs in per_seed if method in runs]
            rep.add_row(setting=f"{target}, pretrained: {row.label}", method=method, metric="accuracy",
                        values=[100 * r["acc"] for r in rs], paper=None,
                        init_accuracy=round(100 * sum(r["init"] for r in rs) / len(rs), 2),
                        trained_params=rs[0]["trained_params"], pretrained=row.label)
    if len(pretrain):
        mw = results[pretrain[0].label][0]  # seed 0's coefficients
        rep.config["source_accuracy_on_target"] = mw["source_acc_on_target"]
        rep.config["coeffs_accuracy"] = mw.get("coeffs_accuracy")
        rep.config["coeffs_learned"] = mw.get("coeffs_learned")
    rep.config["pretrain_accuracy"] = {r.label: [x["source_acc"] for x in results[r.label]] for r in rows}
    print(format_table(rep.rows, ["setting", "method", "mean", "stderr", "init_accuracy", "trained_params"]))
    return rep.write(opts.json)
