"""``tessera reproduce compat-transfer``: paper 004, Sec. 5.3 / Fig. 4 analog (faster transfer learning).

A rotation head is first trained on a third data set (KMNIST, images only) and frozen. The source model
(MNIST) and each target model (USPS, Fashion-MNIST) are then trained separately against that frozen head
(incremental RP, optionally from identical initial weights). The source extractor is recombined with the
target head and evaluated on the target test set right after recombination and after k fine-tuning
steps of the whole recombined network. Baselines: components trained independently (each with its own
random rotation head) recombined, and the source extractor with a re-initialised head.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..compat.apps import finetune_curve, reinit
from ..compat.aux import RP, RotationTask, make_networks
from ..compat.components import split_at
from ..compat.measure import evaluate
from ..compat.methods import NetSpec
from ..compat.models import build
from ..compat.schemes import Member, train_incremental, train_joint
from ..compat.tasks import LabelledTask, load_task, subsample
from ..errors import ConfigError
from ..results import Report
from ..threads import intra_op_threads
from ..train.dist import select_device
from . import RunOptions
from .compat_protocol import pct, recipe
from .units import Units

__all__ = ["run", "Budget", "BUDGETS"]

METHODS = {"RP": "ours: RP (frozen shared rotation head)", "IIW+RP": "ours: IIW+RP",
           "independent": "independent components", "reinit": "source extractor + re-initialised head"}


@dataclass
class Budget:
    seeds: int = 3
    source: str = "mnist"
    targets: tuple[str, ...] = ("usps", "fashion_mnist")
    rp_data: str = "kmnist"
    size: int = 16
    width: int = 16
    rp_steps: int = 400          # rotation-head pretraining on rp_data
    steps: int = 600             # source and each target model
    finetune: tuple[int, ...] = (0, 10, 50, 200)
    finetune_lr: float = 1e-3
    batch_size: int = 64
    checkpoint_every: int = 200  # engine checkpoints (global steps): a killed run loses less than that
    lr: float = 2e-3
    schedule: str = "cosine"     # "paper": App. E's lr / 10 every 5,000 steps (initial models only)
    weight_decay: float = 0.0    # fine-tuning always without (App. E)
    n_target_train: int | None = 5000
    n_train: int | None = None
    n_test: int | None = None


BUDGETS = {"quick": Budget(width=4, rp_steps=20, steps=30, finetune=(0, 5), n_train=2000, n_test=500,
                           n_target_train=1000),
           "default": Budget(),
           # App. E's recipe for the initial models
           "paper": Budget(seeds=10, size=32, rp_steps=20000, steps=20000, batch_size=512, lr=0.01, schedule="paper",
                           weight_decay=1e-7, checkpoint_every=500, finetune=(0, 100, 500, 2000))}


def _net(b: Budget, seed: int, iiw_seed: int | None, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    spec = NetSpec("resnet", {"width": b.width})
    net = make_networks(lambda: build("resnet", num_classes=10, **spec.kwargs), 1,
                        seed=iiw_seed if iiw_seed is not None else seed)[0]
    ext, head = split_at(net, "stage2")
    return ext.to(device), head.to(device)


def _unit(work: Path, src: LabelledTask, targets: list[LabelledTask], rp_x: torch.Tensor, b: Budget, seed: int,
          device: torch.device) -> dict[str, Any]:
    cfg = lambda s: recipe(b.steps, b.batch_size, b.lr, s, schedule=b.schedule,  # noqa: E731
                           weight_decay=b.weight_decay, device=str(device), checkpoint_every=b.checkpoint_every)
    rot = lambda: RotationTask("random")  # noqa: E731
    rp_head = NetSpec("resnet", {"width": b.width}).head(4).to(device)
    rp = RP(rp_head, rot())
    e0, _ = _net(b, 1000 + seed, None, device)  # the RP-pretraining network (only its head is kept)
    train_joint([Member(b.rp_data, e0, None, rp_x, None)], [rp], replace(cfg(seed), steps=b.rp_steps),
                out_dir=work / "rp")

    def trained(kind: str, task: LabelledTask, s: int) -> tuple[torch.nn.Module, torch.nn.Module, int]:
        ext, head = _net(b, s, seed if kind == "IIW+RP" else None, device)
        m = Member(task.name, ext, head, task.x, task.y, task.classes)
        run = work / f"{kind}_{task.name}"
        if kind == "independent":
            m.own_aux = [RP(NetSpec("resnet", {"width": b.width}).head(4).to(device), rot())]
            r = train_joint([m], [], cfg(s), out_dir=run)
        else:
            r = train_incremental([m], [rp], cfg(s), train_aux_first=False, out_dir=run)[0]
        return ext, head, r["trained_params"]

    sources = {k: trained(k, src, 10 * seed + 1)[:2] for k in ("RP", "IIW+RP", "independent")}
    out: dict[str, Any] = {"source_accuracy": {k: evaluate(e, h, src.test.x, src.test.y) for k, (e, h) in sources.items()}}
    fcfg = recipe(max(b.finetune), b.batch_size, b.finetune_lr, seed + 7, schedule="constant", device=str(device),
                  checkpoint_every=b.checkpoint_every)
    for ti, tgt in enumerate(targets):
        res: dict[str, Any] = {}
        for k in ("RP", "IIW+RP", "independent"):
            te, th, _ = trained(k, tgt, 10 * seed + 2 + ti)
            res[f"target_model_{k}"] = evaluate(te, th, tgt.test.x, tgt.test.y)
            res[k] = finetune_curve(sources[k][0], th, tgt.x, tgt.y, tgt.test, list(b.finetune), fcfg,
                                    out_dir=work / f"finetune_{k}_{tgt.name}")
            if k == "independent":
                res["reinit"] = finetune_curve(sources[k][0], reinit(th, seed), tgt.x, tgt.y, tgt.test,
                                               list(b.finetune), fcfg, out_dir=work / f"finetune_reinit_{tgt.name}")
        res["finetuned_params"] = sum(p.numel() for p in [*sources["RP"][0].parameters(), *th.parameters()])
        out[tgt.name] = res
    return out


@intra_op_threads(1)
def run(opts: RunOptions) -> dict[str, Any]:
    """Fig. 4 analog, ``opts.seeds`` seeds (default 3); writes ``opts.json``."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for compat-transfer; choose {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    seeds = opts.seeds if opts.seeds is not None else b.seeds
    device = select_device(opts.device)
    config = {**asdict(b), "seeds": seeds, "budget": opts.budget, "metric": "target test accuracy (%)",
              "finetuning": "whole recombined network, Adam, constant lr",
              "paper_values": "Fig. 4: 40.0-66.4% right after recombination (ImageNet -> CIFAR/STL)",
              "trainer": "tessera.train (engine)"}
    report = Report("compat-transfer", config=config, device=str(device))
    units = Units(opts, "compat-transfer", config)
    src = load_task(b.source, b.size, opts.data_root, b.n_train, b.n_test)
    tgts = []
    for n in b.targets:
        t = load_task(n, b.size, opts.data_root, b.n_train, b.n_test)
        tgts.append(LabelledTask(t.name, *subsample(t.x, t.y, b.n_target_train), t.test))
    rp_x = load_task(b.rp_data, b.size, opts.data_root, b.n_train, b.n_test).x
    rs = [units.run((f"{b.source}-to-{'-'.join(b.targets)}", f"seed{s}"),
                    lambda w: _unit(w, src, tgts, rp_x, b, s, device)) for s in range(seeds)]
    for tgt in b.targets:
        setting = f"{b.source}->{tgt}"
        for key, name in METHODS.items():
            for i, k in enumerate(b.finetune):
                metric = "recombination_accuracy" if k == 0 else f"accuracy_after_{k}_steps"
                report.add_row(setting=setting, method=name, metric=metric, values=[pct(r[tgt][key][i]) for r in rs],
                               paper=None, trained_params=0 if k == 0 else rs[0][tgt]["finetuned_params"])
        for k in ("RP", "IIW+RP", "independent"):
            report.add_row(setting=setting, method=f"target model ({k})", metric="own_accuracy",
                           values=[pct(r[tgt][f"target_model_{k}"]) for r in rs], paper=None)
    return report.write(opts.json)
