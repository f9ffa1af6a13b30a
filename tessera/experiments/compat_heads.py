"""``tessera reproduce compat-heads``: paper 004, Sec. 5.2 / Fig. 3 analog on Fashion-MNIST and MNIST (16x16).

Three extractor architectures (ResNet-, wide ResNet- and MobileNet-style, each with a 1x1 adapter to a
common width) are trained jointly with ONE MobileNet-style head (6 inverted residual blocks of
expansion 6, the depth of the paper's head: MobileNet V2 after its 11th of 17 blocks) on the first 5
classes. The head is then extended to 10 classes and trained on all classes through one frozen
*reference* extractor; finally the updated head is attached to every extractor, none of which was
retrained. Every architecture takes a turn as the reference (the paper uses the wide ResNet), on
Fashion-MNIST and on MNIST. Upper bound: each architecture trained alone on all 10 classes (with its
own rotation head). The lower bound of a perfect 5-class model is 50%. Also written: the
extractor-by-head accuracy matrices (PNG).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compat.apps import extend_head, update_head, with_adapter
from ..compat.aux import RP, RotationTask
from ..compat.components import feature_shape, split_at
from ..compat.measure import TestSet, recombination_matrix
from ..compat.methods import per_member
from ..compat.models import build, mobile_head
from ..compat.plots import heatmap
from ..compat.schemes import Member, train_joint
from ..compat.tasks import load_task
from ..errors import ConfigError
from ..results import Report
from ..threads import intra_op_threads
from ..train.dist import select_device
from . import RunOptions
from .compat_protocol import pct, recipe
from .units import Units

__all__ = ["run", "Budget", "BUDGETS", "PAPER"]

# CIFAR-10, reference = wide ResNet-56, (updated head on the frozen extractor, upper bound): ResNet-56
# and MobileNet V2 from Sec. 5.2's text (Fig. 3), the wide ResNet-56 from Fig. 11 ("FE frozen").
PAPER = {"wide_resnet": (91.9, 94.9), "resnet": (91.7, 94.6), "mobilenet": (91.6, 93.3)}
PAPER_REFERENCE = "wide_resnet"


@dataclass
class Budget:
    seeds: int = 3
    datasets: tuple[str, ...] = ("fashion_mnist", "mnist")
    size: int = 16
    common_width: int = 32       # the paper's adapters map to 64 channels
    head_blocks: int = 6         # the paper's head depth (MobileNet V2 blocks 12-17)
    head_expansion: int = 6
    archs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "resnet": {"width": 8}, "wide_resnet": {"width": 16, "depth": 2}, "mobilenet": {"width": 8}})
    references: tuple[str, ...] = ("wide_resnet", "resnet", "mobilenet")   # the paper: wide_resnet
    first_classes: int = 5
    steps: int = 600             # phase 1, per extractor
    head_steps: int = 600        # phase 2, head only
    ub_steps: int = 600          # upper bound, per architecture
    batch_size: int = 64
    checkpoint_every: int = 200  # engine checkpoints (global steps): a killed run loses less than that
    lr: float = 2e-3
    schedule: str = "cosine"     # "paper": App. E's lr / 10 every 5,000 steps
    weight_decay: float = 0.0
    n_train: int | None = None
    n_test: int | None = None


BUDGETS = {"quick": Budget(steps=20, head_steps=20, ub_steps=20, n_train=2000, n_test=500, datasets=("fashion_mnist",),
                           references=("wide_resnet",), head_blocks=2, head_expansion=4,
                           archs={"resnet": {"width": 4}, "wide_resnet": {"width": 8, "depth": 2},
                                  "mobilenet": {"width": 4}}),
           "default": Budget(),
           # App. E's recipe; the paper's 64-channel adapters
           "paper": Budget(seeds=10, size=32, common_width=64, steps=20000, head_steps=20000, ub_steps=20000,
                           batch_size=512, lr=0.01, schedule="paper", weight_decay=1e-7, checkpoint_every=500)}


def _extractor(name: str, kw: dict[str, Any], width: int, size: int, num_classes: int) -> torch.nn.Module:
    net = build(name, num_classes=num_classes, **kw)
    ext, _ = split_at(net, net.split_point)  # type: ignore[arg-type]
    return with_adapter(ext, feature_shape(ext, (1, size, size))[0], width)


def _n(*modules: torch.nn.Module) -> int:
    """Scalars in ``modules`` (shared parameters once)."""
    return sum(p.numel() for p in {id(p): p for m in modules for p in m.parameters()}.values())


def _unit(work: Path, data: tuple[torch.Tensor, torch.Tensor, TestSet], b: Budget, seed: int,
          device: torch.device) -> dict[str, Any]:
    x, y, test = data
    k = b.first_classes
    cfg = lambda steps, s: recipe(steps, b.batch_size, b.lr, s, schedule=b.schedule,  # noqa: E731
                                  weight_decay=b.weight_decay, device=str(device), checkpoint_every=b.checkpoint_every)
    head_of = lambda n: mobile_head(b.common_width, n, blocks=b.head_blocks, expansion=b.head_expansion)  # noqa: E731
    names = list(b.archs)
    torch.manual_seed(seed)
    exts = [_extractor(n, b.archs[n], b.common_width, b.size, 10).to(device) for n in names]
    head = head_of(k).to(device)
    first = y < k
    train_joint([Member(n, e, head, x[first], y[first]) for n, e in zip(names, exts)], [],
                per_member(cfg(b.steps, seed), len(names)), out_dir=work / "joint")
    sub = TestSet(test.x[test.y < k], test.y[test.y < k], test.classes[:k])
    phase1 = recombination_matrix(exts, [head], [sub] * len(exts), [test.classes[:k]])[:, 0]
    extend_head(head, 10)
    old, new = test.y < k, test.y >= k
    per_ref: dict[str, Any] = {}
    for ref in b.references:   # the same joint phase, then the head updated through each reference in turn
        h = copy.deepcopy(head)
        run = update_head(exts[names.index(ref)], h, x, y, cfg(b.head_steps, seed + 1), out_dir=work / f"head_{ref}")
        per_ref[ref] = {"updated_head": recombination_matrix(exts, [h], [test] * len(exts), [test.classes])[:, 0].tolist(),
                        "head_params": run["trained_params"]}
        for g, m in (("old", old), ("new", new)):  # old (first k) and new classes separately, still 10-way
            per_ref[ref][f"{g}_classes"] = recombination_matrix(
                exts, [h], [TestSet(test.x[m], test.y[m], test.classes)] * len(exts), [test.classes])[:, 0].tolist()
    ub_exts, ub_heads, ub_params = [], [], []
    for i, n in enumerate(names):
        torch.manual_seed(seed * 100 + i)
        e = _extractor(n, b.archs[n], b.common_width, b.size, 10).to(device)
        h = head_of(10).to(device)
        own = RP(head_of(4).to(device), RotationTask("random"))
        r = train_joint([Member(n, e, h, x, y, own_aux=[own])], [], cfg(b.ub_steps, seed + 2 + i),
                        out_dir=work / f"alone_{n}")
        ub_exts.append(e), ub_heads.append(h), ub_params.append(r["trained_params"])
    mat = recombination_matrix(ub_exts, ub_heads, [test] * len(ub_exts), [test.classes] * len(names))  # alone: own pairs
    return {"archs": names, "phase1_5class": phase1.tolist(), "references": per_ref,
            "upper_bound": np.diag(mat).tolist(), "matrix_alone": mat.tolist(),
            "params": {"retrain_all": int(sum(ub_params)), "extractors": [_n(e) for e in exts],
                       "head": _n(head)}}


@intra_op_threads(1)
def run(opts: RunOptions) -> dict[str, Any]:
    """Fig. 3 analog, ``opts.seeds`` seeds (default 3); writes ``opts.json`` and matrix PNGs."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for compat-heads; choose {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    seeds = opts.seeds if opts.seeds is not None else b.seeds
    device = select_device(opts.device)
    config = {**asdict(b), "seeds": seeds, "budget": opts.budget, "metric": "accuracy (%) on all 10 classes",
              "head": f"mobilenet-style, {b.head_blocks} inverted residual blocks of expansion {b.head_expansion}",
              "lower_bound": 50.0, "upper_bound": "each architecture trained alone, scored with its own head",
              "per_group": "updated head also scored on old / new classes' test images",
              "paper_values": "CIFAR-10, reference wide ResNet-56: Sec. 5.2 text (Fig. 3), Fig. 11 (wide ResNet)",
              "trainer": "tessera.train (engine)"}
    report = Report("compat-heads", config=config, device=str(device))
    units = Units(opts, "compat-heads", config)
    for ds in b.datasets:
        t = load_task(ds, b.size, opts.data_root, b.n_train, b.n_test)
        data = (t.x, t.y, t.test)
        rs = [units.run((ds, f"seed{s}"), lambda w, s=s: _unit(w, data, b, s, device)) for s in range(seeds)]
        _rows(report, b, ds, rs, opts)
        report.config[f"params_{ds}"] = rs[0]["params"]
    return report.write(opts.json)


def _rows(report: Report, b: Budget, ds: str, rs: list[dict[str, Any]], opts: RunOptions) -> None:
    archs = rs[0]["archs"]
    for ref in b.references:
        setting = f"{ds} {b.first_classes}->10 classes, reference {ref}"
        paper_ok = ds == "fashion_mnist" and ref == PAPER_REFERENCE   # the paper: CIFAR-10, wide ResNet reference
        for i, n in enumerate(archs):
            tag = " (reference)" if n == ref else ""
            report.add_row(setting=setting, method=f"{n}{tag} + updated shared head", metric="accuracy",
                           values=[pct(r["references"][ref]["updated_head"][i]) for r in rs],
                           paper=PAPER[n][0] if paper_ok and n in PAPER else None,
                           trained_params=rs[0]["references"][ref]["head_params"])
            for g, label in (("old", f"classes 0-{b.first_classes - 1}"), ("new", f"classes {b.first_classes}-9")):
                report.add_row(setting=f"{setting}, test images of {label} only", method=f"{n}{tag} + updated shared head",
                               metric="accuracy", values=[pct(r["references"][ref][f"{g}_classes"][i]) for r in rs],
                               paper=None)
        mat = np.mean([r["references"][ref]["updated_head"] for r in rs], axis=0)[:, None]   # (archs, 1)
        try:
            heatmap(mat, archs, [f"shared (ref {ref})"], Path(opts.out) / "compat-heads" / f"{ds}_ref_{ref}.png",
                    title=f"{setting}: extractor x updated head")
        except Exception as e:  # a plot must never lose the results
            print(f"[compat-heads] heatmap skipped: {e}", flush=True)
    for i, n in enumerate(archs):
        report.add_row(setting=f"{ds} 10 classes", method=f"{n} upper bound (trained alone)", metric="accuracy",
                       values=[pct(r["upper_bound"][i]) for r in rs],
                       paper=PAPER[n][1] if ds == "fashion_mnist" and n in PAPER else None,
                       trained_params=rs[0]["params"]["retrain_all"])
        report.add_row(setting=f"{ds} first {b.first_classes} classes (phase 1)", method=n,
                       metric="accuracy", values=[pct(r["phase1_5class"][i]) for r in rs], paper=None)
