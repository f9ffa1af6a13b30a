"""``tessera reproduce compat-heads``: paper 004, Sec. 5.2 / Fig. 3 analog on Fashion-MNIST (16x16).

Three extractor architectures (ResNet-, wide ResNet- and MobileNet-style, each with a 1x1 adapter to a
common width) are trained jointly with ONE MobileNet-style head on the first 5 classes. The head is then
extended to 10 classes and trained on all classes through the frozen *reference* extractor (the wide
ResNet); finally the updated head is attached to every extractor, none of which was retrained.
Upper bound: each architecture trained alone on all 10 classes (with its own rotation head). The lower
bound of a perfect 5-class model is 50%. Also written: the extractor-by-head accuracy matrix (PNG).
"""
from __future__ import annotations

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

# Fig. 3 / Fig. 11 (CIFAR-10): updated head on each frozen extractor, and the upper bounds.
PAPER = {"wide_resnet": (91.9, 94.9), "resnet": (91.7, 94.6), "mobilenet": (91.6, 93.3)}


@dataclass
class Budget:
    seeds: int = 3
    dataset: str = "fashion_mnist"
    size: int = 16
    common_width: int = 32
    archs: dict[str, dict[str, Any]] = field(default_factory=lambda: {
        "resnet": {"width": 8}, "wide_resnet": {"width": 16, "depth": 2}, "mobilenet": {"width": 8}})
    reference: str = "wide_resnet"
    first_classes: int = 5
    steps: int = 600             # phase 1, per extractor
    head_steps: int = 600        # phase 2, head only
    ub_steps: int = 600          # upper bound, per architecture
    batch_size: int = 64
    checkpoint_every: int = 200  # engine checkpoints (global steps): a killed run loses less than that
    lr: float = 2e-3
    n_train: int | None = None
    n_test: int | None = None


BUDGETS = {"quick": Budget(steps=20, head_steps=20, ub_steps=20, n_train=2000, n_test=500,
                           archs={"resnet": {"width": 4}, "wide_resnet": {"width": 8, "depth": 2},
                                  "mobilenet": {"width": 4}}),
           "default": Budget(),
           "paper": Budget(seeds=10, size=32, steps=5000, head_steps=5000, ub_steps=5000)}


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
    cfg = lambda steps, s: recipe(steps, b.batch_size, b.lr, s, device=str(device),  # noqa: E731
                                  checkpoint_every=b.checkpoint_every)
    names = list(b.archs)
    torch.manual_seed(seed)
    exts = [_extractor(n, b.archs[n], b.common_width, b.size, 10).to(device) for n in names]
    head = mobile_head(b.common_width, k).to(device)
    first = y < k
    train_joint([Member(n, e, head, x[first], y[first]) for n, e in zip(names, exts)], [],
                per_member(cfg(b.steps, seed), len(names)), out_dir=work / "joint")
    sub = TestSet(test.x[test.y < k], test.y[test.y < k], test.classes[:k])
    phase1 = recombination_matrix(exts, [head], [sub] * len(exts), [test.classes[:k]])[:, 0]
    extend_head(head, 10)
    ref = exts[names.index(b.reference)]
    head_run = update_head(ref, head, x, y, cfg(b.head_steps, seed + 1), out_dir=work / "head")
    ub_exts, ub_heads, ub_params = [], [], []
    for i, n in enumerate(names):
        torch.manual_seed(seed * 100 + i)
        e = _extractor(n, b.archs[n], b.common_width, b.size, 10).to(device)
        h = mobile_head(b.common_width, 10).to(device)
        own = RP(mobile_head(b.common_width, 4).to(device), RotationTask("random"))
        r = train_joint([Member(n, e, h, x, y, own_aux=[own])], [], cfg(b.ub_steps, seed + 2 + i),
                        out_dir=work / f"alone_{n}")
        ub_exts.append(e), ub_heads.append(h), ub_params.append(r["trained_params"])
    mat = recombination_matrix(exts, [head] + ub_heads, [test] * len(exts), [test.classes] * (1 + len(names)))
    # the updated head on the old (first k) and the new classes separately, still a 10-way prediction
    old, new = test.y < k, test.y >= k
    by_group = {g: recombination_matrix(exts, [head], [TestSet(test.x[m], test.y[m], test.classes)] * len(exts),
                                        [test.classes])[:, 0].tolist() for g, m in (("old", old), ("new", new))}
    ub = [recombination_matrix([e], [h], [test])[0, 0] for e, h in zip(ub_exts, ub_heads)]
    return {"archs": names, "phase1_5class": phase1.tolist(), "updated_head": mat[:, 0].tolist(),
            "updated_head_old_classes": by_group["old"], "updated_head_new_classes": by_group["new"],
            "upper_bound": ub, "matrix": mat.tolist(),
            "params": {"head_update": head_run["trained_params"], "retrain_all": int(sum(ub_params)),
                       "extractors": [_n(e) for e in exts]}}


@intra_op_threads(1)
def run(opts: RunOptions) -> dict[str, Any]:
    """Fig. 3 analog, ``opts.seeds`` seeds (default 3); writes ``opts.json`` and a matrix PNG."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for compat-heads; choose {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    seeds = opts.seeds if opts.seeds is not None else b.seeds
    device = select_device(opts.device)
    config = {**asdict(b), "seeds": seeds, "budget": opts.budget, "head": "mobilenet-style (2 inverted residual blocks)",
              "metric": "accuracy (%) on all 10 classes", "lower_bound": 50.0,
              "per_group": "updated head also scored on old / new classes' test images",
              "paper_values": "Fig. 3 / Fig. 11, CIFAR-10, feature extractors frozen",
              "trainer": "tessera.train (engine)"}
    report = Report("compat-heads", config=config, device=str(device))
    units = Units(opts, "compat-heads", config)
    t = load_task(b.dataset, b.size, opts.data_root, b.n_train, b.n_test)
    data = (t.x, t.y, t.test)
    rs = [units.run((b.dataset, f"seed{s}"), lambda w: _unit(w, data, b, s, device)) for s in range(seeds)]
    setting = f"{b.dataset} {b.first_classes}->10 classes"
    for i, n in enumerate(rs[0]["archs"]):
        ref = " (reference)" if n == b.reference else ""
        report.add_row(setting=setting, method=f"{n}{ref} + updated shared head", metric="accuracy",
                       values=[pct(r["updated_head"][i]) for r in rs], paper=PAPER.get(n, (None, None))[0],
                       trained_params=rs[0]["params"]["head_update"])
        report.add_row(setting=setting, method=f"{n} upper bound (trained alone)", metric="accuracy",
                       values=[pct(r["upper_bound"][i]) for r in rs], paper=PAPER.get(n, (None, None))[1],
                       trained_params=rs[0]["params"]["retrain_all"])
        for g, label in (("old", f"classes 0-{b.first_classes - 1}"), ("new", f"classes {b.first_classes}-9")):
            report.add_row(setting=f"{setting}, test images of {label} only", method=f"{n}{ref} + updated shared head",
                           metric="accuracy", values=[pct(r[f"updated_head_{g}_classes"][i]) for r in rs], paper=None,
                           trained_params=rs[0]["params"]["head_update"])
        report.add_row(setting=f"{b.dataset} first {b.first_classes} classes (phase 1)", method=n,
                       metric="accuracy", values=[pct(r["phase1_5class"][i]) for r in rs], paper=None)
    mat = np.mean([np.asarray(r["matrix"]) for r in rs], axis=0)
    try:
        heatmap(mat, rs[0]["archs"], ["shared (updated)"] + [f"{n} alone" for n in rs[0]["archs"]],
                Path(opts.out) / "compat-heads" / "matrix.png", title=f"{setting}: extractor x head accuracy")
    except Exception as e:  # a plot must never lose the results
        print(f"[compat-heads] heatmap skipped: {e}", flush=True)
    report.config["params"] = rs[0]["params"]
    return report.write(opts.json)
