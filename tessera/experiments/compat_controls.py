"""``tessera reproduce compat-controls``: the control experiments of paper 004 (Sec. 4 and App. C) on
MNIST <-> USPS, with the network and recipe of ``compat-recombination``'s budget of the same name.

* split position (App. C.4, Fig. 8: IIW+RP, 5 runs): where the networks are split into extractor and
  head; here for RP and IIW+RP;
* number of common classes (App. C.5, Fig. 9: IIW+DCC, 3 runs): the shared DCC head trained on the
  first k of the 10 common classes (recombination still measured on all 10);
* pretrained initial weights (Sec. 4, "Starting from pre-trained models"): networks start from weights
  pretrained by rotation prediction alone on a third data set (KMNIST images, as the paper pretrains
  on ILSVRC-12 without labels), identical ones with IIW, two different ones (pretrained from different
  random inits) without;
* RP variants: Eq. 2 exactly (all four rotations of every image, not one random rotation) and 4x the
  training steps;
* normalization variants of IIW+DCC (App. C.1, Fig. 5): LayerNorm, InstanceNorm, L2-normalized features;
* a pair without common classes (Fashion-MNIST <-> KMNIST, Sec. 5.3's measurement: the other task's
  extractor under a task's own head, on that task's test set; DCC impossible).

Paper values are quoted from the text (Sec. 4 for the pretrained rows); Fig. 5, 8 and 9 give no number
in the text for the rows here, so their ``paper`` is empty.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..compat.aux import RP, RotationTask
from ..compat.schemes import Member, train_joint
from ..compat.tasks import PAIRS, LabelledTask, load_pair, load_task
from ..errors import ConfigError
from ..results import Report
from ..threads import intra_op_threads
from ..train.dist import select_device
from . import RunOptions
from .compat_protocol import pct, train_measure
from .compat_recombination import BUDGETS as RECOMBINATION
from .compat_recombination import Budget as Recipe
from .compat_recombination import config_of, spec_of
from .units import Units

__all__ = ["run", "Budget", "BUDGETS", "PAPER_PRETRAINED"]

PAPER_PRETRAINED = {"IIW": 74.3, "IIW+DCC": 82.7, "RP": 19.7, "DCC": 52.3}  # Sec. 4 text
PAPER_PRETRAINED_CORR = {"IIW": 0.69}                                    # App. C.2 text
NORM_VARIANTS = {"LayerNorm": {"norm": "ln"}, "InstanceNorm": {"norm": "in"}, "L2 features": {"l2_features": True}}


@dataclass
class Budget:
    recipe: Recipe = field(default_factory=lambda: replace(RECOMBINATION["default"]))
    split_seeds: int = 5
    splits: tuple[str, ...] = ("stage1", "stage2", "stage3")     # stage2: the default split
    split_methods: tuple[str, ...] = ("RP", "IIW+RP")
    classes_seeds: int = 3
    num_common: tuple[int, ...] = (2, 4, 6, 8, 10)
    pretrained_seeds: int = 5
    pretrain_data: str = "kmnist"      # a task of tessera.compat.tasks.load_task, or a pair (both tasks' images)
    pretrained_methods: tuple[str, ...] = ("IIW", "IIW+DCC", "RP", "DCC")
    rp_seeds: int = 3
    rp_long: int = 4                    # "RP, 4x steps"
    norm_seeds: int = 3
    norm_variants: tuple[str, ...] = tuple(NORM_VARIANTS)
    no_common_pair: str = "fashion_kmnist"
    no_common_seeds: int = 3
    no_common_methods: tuple[str, ...] = ("independent", "IIW", "RP", "IIW+RP", "upper_bound")


BUDGETS = {
    "quick": Budget(recipe=replace(RECOMBINATION["quick"]), split_seeds=1, splits=("stage1",), split_methods=("RP",),
                    classes_seeds=1, num_common=(2,), pretrained_seeds=1, pretrained_methods=("IIW", "RP"),
                    rp_seeds=1, norm_seeds=1, norm_variants=("LayerNorm",), no_common_seeds=1,
                    no_common_methods=("RP",)),
    "default": Budget(),
    "paper": Budget(recipe=replace(RECOMBINATION["paper"]), splits=("stage1", "stage2.4", "stage2", "stage3.0", "stage3")),
}


def _pretrained_unit(work: Path, tasks: tuple[LabelledTask, LabelledTask], x_pre: torch.Tensor, b: Budget,
                     seed: int, device: torch.device) -> dict[str, Any]:
    """Two networks pretrained by rotation prediction alone (different inits), then each method from them."""
    r = b.recipe
    weights = []
    for k in range(2):
        torch.manual_seed(7_000_000 + 100 * seed + k)
        ext, head = spec_of(r).parts(4)
        train_joint([Member(b.pretrain_data, ext, None, x_pre, None)], [RP(head, RotationTask(r.rotation))],
                    config_of(r, 100 * seed + k, device), out_dir=work / f"pretrain{k}")
        body = {n: v for n, v in head.state_dict().items() if not n.startswith("fc.")}  # not the 4-way classifier
        weights.append({**ext.state_dict(), **body})
    out = {}
    for m in b.pretrained_methods:
        pre = weights[0] if "IIW" in m.split("+") else weights
        out[m] = train_measure(work / m, m, tasks, spec_of(r), config_of(r, seed, device), rotation=r.rotation,
                               pretrained=pre)
    return out


@intra_op_threads(1)
def run(opts: RunOptions, *, pairs: tuple[str, str] | None = None) -> dict[str, Any]:
    """All controls; ``pairs`` overrides (pair, no-common-classes pair), e.g. the offline digits pairs."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for compat-controls; choose {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    r = b.recipe
    if pairs is not None:
        r.pair, b.no_common_pair = pairs
    n = opts.seeds
    device = select_device(opts.device)
    config = {**asdict(b), "seeds": n, "budget": opts.budget, "trainer": "tessera.train (engine)", "units": "percent",
              "metric": "recombination accuracy (test-batch BN statistics)",
              "paper_values": "CIFAR-10 / STL-10, quoted from Sec. 4 / App. C.2 text"}
    report = Report("compat-controls", config=config, device=str(device))
    units = Units(opts, "compat-controls", config)
    tasks = load_pair(r.pair, r.size, opts.data_root, r.n_train, r.n_test)
    setting = {"mnist_usps": "mnist<->usps"}.get(r.pair, r.pair)

    def rows(group: str, method: str, seeds: int, fn: Callable[[Path, int], dict[str, Any]], paper: float | None = None,
             key: str = "recombination_accuracy") -> None:
        rs = [units.run((group, method, f"seed{s}"), lambda w, s=s: fn(w, s)) for s in range(n or seeds)]
        report.add_row(setting=f"{setting} ({group})", method=method, metric="recombination_accuracy",
                       values=[pct(x[key]) for x in rs], paper=paper, trained_params=rs[0]["trained_params"])
        for k in ("correlation", "correlation_permuted"):
            report.add_row(setting=f"{setting} ({group})", method=method, metric=f"feature_{k}",
                           values=[x[k] for x in rs], paper=None)

    for m in b.split_methods:
        for sp in b.splits:
            rows("split position", f"{m}, split after {sp}", b.split_seeds, lambda w, s, m=m, sp=sp: train_measure(
                w, m, tasks, spec_of(r, split=sp), config_of(r, s, device), rotation=r.rotation))
    for k in b.num_common:
        rows("number of DCC classes", f"IIW+DCC, {k} common classes", b.classes_seeds, lambda w, s, k=k: train_measure(
            w, "IIW+DCC", tasks, spec_of(r), config_of(r, s, device), rotation=r.rotation,
            dcc_classes=list(tasks[0].classes)[:k]))
    rows("RP variants", "RP, all four rotations (Eq. 2)", b.rp_seeds, lambda w, s: train_measure(
        w, "RP", tasks, spec_of(r), config_of(r, s, device), rotation="all"))
    rows("RP variants", f"RP, {b.rp_long}x steps", b.rp_seeds, lambda w, s: train_measure(
        w, "RP", tasks, spec_of(r), config_of(r, s, device, steps=b.rp_long * r.steps), rotation=r.rotation))
    for v in b.norm_variants:
        rows("norm variants", f"IIW+DCC {v}", b.norm_seeds, lambda w, s, v=v: train_measure(
            w, "IIW+DCC", tasks, spec_of(r, **NORM_VARIANTS[v]), config_of(r, s, device), rotation=r.rotation))
    _pretrained_rows(report, units, b, tasks, n, device, opts, setting)
    if b.no_common_methods:
        other = load_pair(b.no_common_pair, r.size, opts.data_root, r.n_train, r.n_test)
        setting2 = {"fashion_kmnist": "fashion_mnist<->kmnist"}.get(b.no_common_pair, b.no_common_pair)
        for m in b.no_common_methods:
            rs = [units.run((b.no_common_pair, m, f"seed{s}"), lambda w, s=s, m=m: train_measure(
                w, m, other, spec_of(r), config_of(r, s, device), rotation=r.rotation, data="head"))
                for s in range(n or b.no_common_seeds)]
            key = "own_accuracy_common" if m == "upper_bound" else "recombination_accuracy"
            report.add_row(setting=f"{setting2} (no common classes)", method="upper bound" if m == "upper_bound" else m,
                           metric="recombination_accuracy", values=[pct(x[key]) for x in rs], paper=None,
                           trained_params=rs[0]["trained_params"])
    return report.write(opts.json)


def _pretrained_rows(report: Report, units: Units, b: Budget, tasks: tuple[LabelledTask, LabelledTask],
                     n: int | None, device: torch.device, opts: RunOptions, setting: str) -> None:
    if not b.pretrained_methods:
        return
    r = b.recipe
    if b.pretrain_data in PAIRS:   # the training images of both tasks of a pair
        x_pre = torch.cat([t.x for t in load_pair(b.pretrain_data, r.size, opts.data_root, r.n_train, r.n_test)])
    else:
        x_pre = load_task(b.pretrain_data, r.size, opts.data_root, r.n_train, r.n_test).x
    rs = [units.run(("pretrained", f"seed{s}"), lambda w, s=s: _pretrained_unit(w, tasks, x_pre, b, s, device))
          for s in range(n or b.pretrained_seeds)]
    for m in b.pretrained_methods:
        report.add_row(setting=f"{setting} (pretrained init)", method=f"{m} from pretrained weights",
                       metric="recombination_accuracy", values=[pct(x[m]["recombination_accuracy"]) for x in rs],
                       paper=PAPER_PRETRAINED.get(m), trained_params=rs[0][m]["trained_params"])
        report.add_row(setting=f"{setting} (pretrained init)", method=f"{m} from pretrained weights",
                       metric="feature_correlation", values=[x[m]["correlation"] for x in rs],
                       paper=PAPER_PRETRAINED_CORR.get(m))
