"""``tessera reproduce mixture-transfer``: paper 002 Table 2 / Table 9 analog on digit tasks.

Templates (and adapters) are trained on 8 of the 9 digit tasks of ``mixture-multitask`` (MNIST,
Fashion-MNIST, KMNIST x original / boundary / blur); the held-out task (default ``kmnist-blur``) is
then learned by fine-tuning only its mixture weights, BN gamma/beta and logits, with the mixture
weights initialized from each source task (Table 2 columns), from the accuracy-based interpolation
and from the learned interpolation (Table 9, App. C Eq. 1), or at random. The baseline is a shared
isometric network co-trained on the same sources with per-task BN and heads ("baseline with
patches", Table 8), transferred by fine-tuning logits and BN only (paper's Table 2 baseline).

All transferred heads start from the head of the source task with the same label set (App. C
assumes shared labels), so the "init" accuracy (before fine-tuning) is meaningful. Accuracy-based
coefficients use each source's accuracy on the target's training part minus chance (10%), clipped
at 0: sources with other label sets score at chance (ours; the paper's formula is a_v / sum a).
"""
from __future__ import annotations

from typing import Any

import torch

from ..results import Report, format_table
from . import RunOptions
from .mixture_common import domain_tasks
from .units import Units

__all__ = ["run", "BUDGETS"]

DATASETS = ("mnist", "fashion_mnist", "kmnist")
KINDS = ("original", "boundary", "blur")
ARCH = dict(channels=24, patch=4, head_channels=(128, 256), dropout=0.2)
SEEDS = {"quick": 1, "default": 3, "paper": 3}
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(depth=4, templates=9, steps=180, ft_steps=30, learn_steps=15, batch=32, n_train=800,
                  n_eval=300, recalibrate=5, sources_to_try=2),
    "default": dict(depth=8, templates=9, steps=2400, ft_steps=200, learn_steps=100, batch=64, n_train=8000,
                    n_eval=2000, recalibrate=0, sources_to_try=8),
    "paper": dict(depth=16, templates=9, steps=16000, ft_steps=2000, learn_steps=300, batch=128, n_train=8000,
                  n_eval=2000, recalibrate=0, sources_to_try=8),
}


def run(opts: RunOptions, target: str = "kmnist-blur") -> dict[str, Any]:
    from ..mixture import (accuracy, accuracy_coefficients, count_parameters, from_source, init_logits, interpolate,
                           learn_interpolation, mixture_clustering, multitask_model, source_accuracies,
                           train_tasks, trainable_parameters)

    b = dict(BUDGETS.get(opts.budget, BUDGETS["default"]))
    seeds = opts.seeds if opts.seeds is not None else SEEDS.get(opts.budget, 3)
    alpha = 0.01
    tasks = domain_tasks(DATASETS, KINDS, root=opts.data_root, n_eval=b["n_eval"], n_train=b["n_train"], seed=0)
    if target not in tasks:
        from ..errors import ConfigError
        raise ConfigError(f"unknown target {target!r}; choose one of: {', '.join(tasks)}")
    sources = {t: d for t, d in tasks.items() if t != target}
    label_src = f"{target.rsplit('-', 1)[0]}-original"         # same label set as the target
    xt, yt, xe, ye = tasks[target]
    rep = Report("mixture-transfer", config={**b, **ARCH, "target": target, "sources": list(sources),
                                             "head_init": label_src, "clustering_alpha": alpha,
                                             "seeds": seeds, "data_split_seed": 0,
                                             "threads": torch.get_num_threads()})

    results: dict[str, list[dict[str, Any]]] = {"baseline_patches": [], "mixture_patches": []}
    units = Units(opts, "mixture-transfer", dict(target=target, **b, alpha=alpha, device=opts.device))

    def run_seed(seed: int) -> None:  # appends this seed's result of each variant to ``results``
        def pretrain(variant: str, work: Any):
            torch.manual_seed(seed)
            net = multitask_model(variant, {t: 10 for t in sources}, depth=b["depth"], num_templates=b["templates"],
                                  seed=seed, **ARCH)
            reg = (lambda t: mixture_clustering(net, t, alpha=alpha)) if variant.startswith("mixture") else None
            res = train_tasks(net, sources, steps=b["steps"], batch=b["batch"], seed=seed, device=opts.device,
                              regularizer=reg, recalibrate=b["recalibrate"], out_dir=work / "pretrain")
            return net, res

        def transfer(net, name: str, what: tuple[str, ...], prepare, work: Any) -> dict[str, Any]:
            prepare(net, name)
            init_acc = accuracy(net, name, xe, ye)
            flags = {p: p.requires_grad for p in net.parameters()}
            params = trainable_parameters(net, name, what)
            n_params = count_parameters(params)
            res = train_tasks(net, {name: tasks[target]}, steps=b["ft_steps"], batch=b["batch"], seed=seed,
                              device=opts.device, params=params, ema=0.0, recalibrate=b["recalibrate"],
                              out_dir=work / name)
            for p, f in flags.items():
                p.requires_grad_(f)
            return {"init": init_acc, "acc": res["acc"][name], "trained_params": n_params}

        for variant in results:
            def one(work: Any, variant: str = variant) -> dict[str, Any]:
                net, res = pretrain(variant, work)
                state = {k: v.clone() for k, v in net.state_dict().items()}
                runs: dict[str, Any] = {"source_acc": res["acc"]}

                def fresh():
                    net.load_state_dict(state, strict=False)
                    return net

                def add_from(src: str):
                    def prep(n, name):
                        from_source(n, name, src, num_classes=10)
                        n.heads[name].load_state_dict(n.heads[label_src].state_dict())
                    return prep
                if variant == "baseline_patches":
                    runs["baseline (logits+BN)"] = transfer(fresh(), "t_base", ("bn", "logits"), add_from(label_src),
                                                           work)
                    return runs
                accs = source_accuracies(net, list(sources), xt[:1000], yt[:1000])
                runs["source_acc_on_target"] = accs
                order = sorted(sources, key=lambda s: (s != label_src, -accs[s]))[:b["sources_to_try"]]
                for i, src in enumerate(order):
                    runs[f"MW init {src}"] = transfer(fresh(), f"t_src{i}", ("mixture", "bn", "logits"),
                                                         add_from(src), work)
                runs["MW init {} (no MW tuning)".format(label_src)] = transfer(
                    fresh(), "t_fixed", ("bn", "logits"), add_from(label_src), work)
                coeffs = accuracy_coefficients(accs, chance=0.1)
                runs["coeffs_accuracy"] = coeffs

                def prep_acc(n, name):
                    interpolate(n, name, coeffs, num_classes=10, copy_head_from=label_src)
                runs["MW accuracy-based interpolation"] = transfer(fresh(), "t_acc", ("mixture", "bn", "logits"),
                                                                     prep_acc, work)

                learned: dict[str, float] = {}

                def prep_learned(n, name):
                    interpolate(n, name, {s: 1.0 for s in sources}, num_classes=10, copy_head_from=label_src)
                    learned.update(learn_interpolation(n, name, list(sources), xt, yt, steps=b["learn_steps"],
                                                       lr=0.1, batch_size=b["batch"], seed=seed,
                                                       out_dir=work / "learn"))
                runs["MW learned interpolation"] = transfer(fresh(), "t_learn", ("mixture", "bn", "logits"),
                                                            prep_learned, work)
                runs["coeffs_learned"] = learned

                def prep_rand(n, name):
                    add_from(label_src)(n, name)
                    with torch.no_grad():
                        n.mixture[name].copy_(init_logits(n.depth, n.num_templates, "random", seed=seed))
                runs["MW random init"] = transfer(fresh(), "t_rand", ("mixture", "bn", "logits"), prep_rand,
                                                  work)
                return runs
            results[variant].append(units.run((variant, f"seed{seed}"), one))

    for seed in range(seeds):  # one fixed data split; the seed varies initialization and batch order
        run_seed(seed)

    for variant, per_seed in results.items():
        # which sources are tried depends on each seed's ranking: a row averages the seeds that tried it
        methods = list(dict.fromkeys(m for runs in per_seed for m, r in runs.items()
                                     if isinstance(r, dict) and "acc" in r))
        for method in methods:
            rs = [runs[method] for runs in per_seed if method in runs]
            rep.add_row(setting=target, method=method, metric="accuracy", values=[100 * r["acc"] for r in rs],
                        paper=None, init_accuracy=round(100 * sum(r["init"] for r in rs) / len(rs), 2),
                        trained_params=rs[0]["trained_params"], pretrained=variant)
    mw = results["mixture_patches"][0]  # seed 0's coefficients
    rep.config["source_accuracy_on_target"] = mw["source_acc_on_target"]
    rep.config["coeffs_accuracy"] = mw["coeffs_accuracy"]
    rep.config["coeffs_learned"] = mw["coeffs_learned"]
    rep.config["pretrain_accuracy"] = {v: [r["source_acc"] for r in results[v]] for v in results}
    print(format_table(rep.rows, ["method", "mean", "stderr", "init_accuracy", "trained_params"]))
    return rep.write(opts.json)
