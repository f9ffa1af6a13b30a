"""``tessera reproduce compat-recombination``: paper 004, Fig. 2 analog, its same-dataset control (App. C.3)
and incremental training in both orders (Sec. 4).

Pair (MNIST <-> USPS, 10 common classes): every combination of IIW, RP and DCC trained jointly, plus
independent networks and the upper bound (independent networks, each with its own rotation head).
Same-dataset control (MNIST <-> MNIST, the same images for both networks): whether a method can make
two networks compatible when the data allows it. Incremental: network a with the auxiliary heads,
then network b against them frozen, starting from identical initial weights; both orders (the paper
averages MNIST-first and USPS-first). Metric: recombination accuracy (extractor of one task + head of
the other, that extractor's test set, common classes, test-batch BN statistics), each network's own
accuracy, the feature cross-correlation with and without the optimal channel permutation (App. C.2),
and the BN modes of App. C.1 for a few methods. The controls that explain the rows (split position,
number of common classes, pretrained init, ...) are ``tessera reproduce compat-controls``.

Paper values (``paper``) are CIFAR-10 / STL-10 numbers quoted from the paper's text (Sec. 4 for Fig. 2
and the incremental row; App. C.1 for the BN row); rows whose number appears only in a plot have none.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compat.aux import common_classes
from ..compat.methods import METHODS, NetSpec
from ..compat.plots import heatmap
from ..compat.tasks import LabelledTask, load_pair
from ..errors import ConfigError
from ..results import Report, mean_stderr
from ..threads import intra_op_threads
from ..train import TrainConfig
from ..train.dist import select_device
from . import RunOptions
from .compat_protocol import pct, recipe, train_measure
from .units import Units

__all__ = ["run", "Budget", "BUDGETS", "PAPER", "spec_of", "config_of", "ordering"]

# Sec. 4 text (Fig. 2 values): recombination accuracy, %, averaged over CIFAR-10 and STL-10.
PAPER = {"independent": 10.6, "IIW": 25.1, "RP": 50.1, "DCC": 65.8, "IIW+RP+DCC": 76.7, "upper_bound": 85.6}
PAPER_OWN = {"IIW+RP+DCC": 86.3}          # Sec. 4 text: own accuracy of the IIW+RP+DCC networks
PAPER_INCREMENTAL = 72.7                  # Sec. 4 text, "Joint vs. incremental training" (76.7 -> 72.7)
PAPER_BN_TRAIN = {"IIW+DCC": 32.4}        # App. C.1 text: training BN statistics (Fig. 5)
# App. C.2 text (Fig. 6): mean feature cross-correlation, direct (RP, DCC) / after the optimal permutation
PAPER_CORR = {("RP", "feature_correlation"): 0.38, ("DCC", "feature_correlation"): 0.19,
              ("independent", "feature_correlation_permuted"): 0.34}
PAPER_ORDER = ("independent", "IIW", "RP", "DCC", "IIW+RP+DCC", "upper_bound")


@dataclass
class Budget:
    seeds: int = 10
    pair: str = "mnist_usps"
    same_pair: str = "mnist_mnist"     # App. C.3's control: both networks on the same data
    size: int = 16
    net: str = "resnet"                # widths 8 / 16 / 32, split after stage 2 at 32 channels @ 4x4
    net_kwargs: dict[str, Any] = field(default_factory=lambda: {"width": 8})
    split: str | None = None           # None: the network's split point (after stage 2)
    steps: int = 300                   # minibatches per network
    batch_size: int = 64
    lr: float = 2e-3
    schedule: str = "cosine"           # "paper": App. E's lr / 10 every 5,000 steps
    weight_decay: float = 0.0
    checkpoint_every: int = 200        # engine checkpoints (global steps): a killed run loses less than that
    rotation: str = "random"           # "all": Eq. 2 exactly (4x the rotation cost)
    n_train: int | None = None
    n_test: int | None = 2000          # test images per task (a fixed random subset; USPS has 2,007)
    methods: tuple[str, ...] = METHODS
    same_methods: tuple[str, ...] = ("independent", "IIW", "RP", "DCC", "IIW+RP+DCC")
    bn_methods: tuple[str, ...] = ("independent", "IIW+DCC", "IIW+RP+DCC")
    incremental: tuple[str, ...] = ("IIW+RP+DCC",)  # trained incrementally too, in both orders


BUDGETS = {
    "quick": Budget(seeds=2, steps=30, net_kwargs={"width": 4}, n_train=2000, n_test=500,
                    methods=("independent", "IIW+RP+DCC", "upper_bound"), same_methods=("RP",),
                    bn_methods=("IIW+RP+DCC",), incremental=()),
    "default": Budget(),
    # App. E: ResNet-56 at 32x32, Adam 0.01, weight decay 1e-7, batch 512, 20k steps, lr / 10 every 5k
    "paper": Budget(size=32, net="resnet56", net_kwargs={"blocks": 9}, steps=20000, batch_size=512, lr=0.01,
                    schedule="paper", weight_decay=1e-7, rotation="all", checkpoint_every=500, n_test=None),
}


def spec_of(b: Budget, **kwargs: Any) -> NetSpec:
    """The budget's network (``kwargs`` override its keyword arguments, ``split`` its split point)."""
    split = kwargs.pop("split", b.split)
    return NetSpec(b.net, {**b.net_kwargs, **kwargs}, split)


def config_of(b: Budget, seed: int, device: torch.device, steps: int | None = None) -> TrainConfig:
    """The budget's per-network training recipe as an engine config."""
    return recipe(steps or b.steps, b.batch_size, b.lr, seed, schedule=b.schedule, weight_decay=b.weight_decay,
                  device=str(device), checkpoint_every=b.checkpoint_every)


def _label(pair: str) -> str:
    return {"mnist_usps": "mnist<->usps", "fashion_kmnist": "fashion_mnist<->kmnist",
            "mnist_mnist": "mnist<->mnist (same dataset)"}.get(pair, pair)


def _name(m: str) -> str:
    return "upper bound" if m == "upper_bound" else m


def _key(m: str, r: dict[str, Any]) -> float:
    return r["own_accuracy_common" if m == "upper_bound" else "recombination_accuracy"]


@intra_op_threads(1)
def run(opts: RunOptions, *, pairs: tuple[str, str] | None = None) -> dict[str, Any]:
    """Fig. 2 analog + same-dataset control + incremental orders; ``pairs`` overrides (pair, same_pair)."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for compat-recombination; choose {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    if pairs is not None:
        b.pair, b.same_pair = pairs
    seeds = opts.seeds if opts.seeds is not None else b.seeds
    device = select_device(opts.device)
    config = {**asdict(b), "seeds": seeds, "budget": opts.budget, "optimizer": f"adam, {b.schedule}",
              "trainer": "tessera.train (engine)", "bn_at_test": "test-batch statistics (batch 500) unless noted",
              "units": "percent", "paper_values": "CIFAR-10 / STL-10, quoted from Sec. 4 / App. C.1 text"}
    report = Report("compat-recombination", config=config, device=str(device))
    units = Units(opts, "compat-recombination", config)
    res: dict[tuple[str, str], list[dict[str, Any]]] = {}
    tasks = load_pair(b.pair, b.size, opts.data_root, b.n_train, b.n_test)
    same = load_pair(b.same_pair, b.size, opts.data_root, b.n_train, b.n_test) if b.same_methods else None
    for seed in range(seeds):
        for m in b.methods:
            modes = ("batch", "train", "recompute") if m in b.bn_methods else ("batch",)
            res.setdefault((b.pair, m), []).append(units.run(
                (b.pair, m, f"seed{seed}"),
                lambda w: train_measure(w, m, tasks, spec_of(b), config_of(b, seed, device), rotation=b.rotation,
                                        bn_modes=modes)))
        for m in b.incremental:
            for order in (tasks, tasks[::-1]):
                res.setdefault((b.pair, f"{m} (incremental, {order[0].name} first)"), []).append(units.run(
                    (b.pair, f"{m} incremental {order[0].name}-first", f"seed{seed}"),
                    lambda w: train_measure(w, m, order, spec_of(b), config_of(b, seed, device), scheme="incremental",
                                            rotation=b.rotation)))
        for m in b.same_methods if same is not None else ():
            res.setdefault((b.same_pair, m), []).append(units.run(
                (b.same_pair, m, f"seed{seed}"),
                lambda w: train_measure(w, m, same, spec_of(b), config_of(b, seed, device), rotation=b.rotation)))
    _rows(report, res, b, tasks, opts)
    report.config["checks"] = _checks(res, b, tasks)
    return report.write(opts.json)


def _rows(report: Report, res: dict, b: Budget, tasks: tuple[LabelledTask, LabelledTask], opts: RunOptions) -> None:
    setting = _label(b.pair)
    inc = [f"{m} (incremental, {t.name} first)" for m in b.incremental for t in tasks]
    for pair, methods in ((b.pair, list(b.methods) + inc), (b.same_pair, list(b.same_methods))):
        for m in methods:
            rs = res.get((pair, m))
            if not rs:
                continue
            where = _label(pair) if "incremental" not in m else f"{setting} (incremental)"
            paper = PAPER.get(m) if pair == b.pair else None
            report.add_row(setting=where, method=_name(m), metric="recombination_accuracy",
                           values=[pct(_key(m, r)) for r in rs], trained_params=rs[0]["trained_params"], paper=paper,
                           **({"note": "each network on its own task, common classes (own rotation heads)"}
                              if m == "upper_bound" else {}))
            report.add_row(setting=where, method=_name(m), metric="own_accuracy",
                           values=[pct(r["own_accuracy"]) for r in rs], trained_params=rs[0]["trained_params"],
                           paper=PAPER_OWN.get(m) if pair == b.pair else None)
            for k in ("correlation", "correlation_permuted"):
                report.add_row(setting=where, method=_name(m), metric=f"feature_{k}", values=[r[k] for r in rs],
                               paper=PAPER_CORR.get((m, f"feature_{k}")) if pair == b.pair else None)
            for mode in ("train", "recompute"):
                if f"recombination_accuracy_{mode}" in rs[0]:
                    report.add_row(setting=f"{setting} (BN {mode} statistics)", method=_name(m),
                                   metric="recombination_accuracy",
                                   values=[pct(r[f"recombination_accuracy_{mode}"]) for r in rs],
                                   paper=PAPER_BN_TRAIN.get(m) if mode == "train" else None)
            _plot(rs, pair, m, [t.name for t in tasks], opts)
    for m in b.incremental:   # the paper's number averages the two orders
        orders = [res.get((b.pair, f"{m} (incremental, {t.name} first)")) for t in tasks]
        if all(orders):
            vals = np.mean([[pct(r["recombination_accuracy"]) for r in rs] for rs in orders], axis=0)
            report.add_row(setting=f"{setting} (incremental)", method=f"{m} (incremental, both orders)",
                           metric="recombination_accuracy", values=vals.tolist(), paper=PAPER_INCREMENTAL)


def _plot(rs: list[dict[str, Any]], pair: str, m: str, names: list[str], opts: RunOptions) -> None:
    mat = np.mean([np.asarray(r["matrix"]) for r in rs], axis=0)
    path = Path(opts.out) / "compat-recombination" / f"{pair}_{m.replace('+', '-').replace(' ', '_')}.png"
    try:
        heatmap(mat, [f"f {n}" for n in names], [f"h {n}" for n in names], path,
                title=f"{_label(pair)}: {_name(m)} (mean of {len(rs)} seeds)")
    except Exception as e:  # a plot must never lose the results
        print(f"[compat-recombination] heatmap skipped: {e}", flush=True)


def ordering(stats: dict[str, tuple[float, float]], order: tuple[str, ...] = PAPER_ORDER) -> list[str]:
    """One sentence per adjacent pair of the paper's ordering: holds / reversed, and whether the gap
    exceeds twice its standard error (``stats[m] = (mean, stderr)`` in %).

    >>> ordering({"a": (10.0, 1.0), "b": (30.0, 1.0), "c": (29.0, 2.0)}, ("a", "b", "c"))
    ['a 10.0 < b 30.0: holds (gap 20.0 +- 1.4, beyond 2 std errors)', 'b 30.0 < c 29.0: reversed (gap -1.0 +- 2.2, within noise)']
    """
    out = []
    present = [m for m in order if m in stats]
    for a, c in zip(present, present[1:]):
        (ma, sa), (mc, sc) = stats[a], stats[c]
        gap, se = mc - ma, float(np.hypot(sa, sc))
        rel = "<=" if c == "upper_bound" else "<"
        holds = gap >= 0 if c == "upper_bound" else gap > 0
        sig = "beyond 2 std errors" if abs(gap) > 2 * se else "within noise"
        out.append(f"{_name(a)} {ma:.1f} {rel} {_name(c)} {mc:.1f}: {'holds' if holds else 'reversed'} "
                   f"(gap {gap:.1f} +- {se:.1f}, {sig})")
    return out


def _checks(res: dict, b: Budget, tasks: tuple[LabelledTask, LabelledTask]) -> dict[str, Any]:
    """The paper's ordering row by row, chance level, the gap to the upper bound, the same-dataset rows."""
    def stats(pair: str) -> dict[str, tuple[float, float]]:
        return {m: mean_stderr([pct(_key(m, r)) for r in rs]) for (p, m), rs in res.items() if p == pair}

    st = stats(b.pair)
    out: dict[str, Any] = {"means": {m: round(v[0], 3) for m, v in st.items()}, "ordering": ordering(st)}
    out["paper_ordering"] = " < ".join(_name(m) for m in PAPER_ORDER if m in st)
    seen = sorted((m for m in PAPER_ORDER if m in st), key=lambda m: st[m][0])
    out["observed_ordering"] = " < ".join(_name(m) for m in seen)
    if "independent" in st:  # chance: 1 / number of common classes
        chance = 100.0 / max(1, len(common_classes(*[t.classes for t in tasks])))
        out["chance"] = round(chance, 3)
        out["independent_near_chance"] = abs(st["independent"][0] - chance) <= 10.0
    if "IIW+RP+DCC" in st and "upper_bound" in st:
        out["all_three_within_10_points_of_upper_bound"] = st["upper_bound"][0] - st["IIW+RP+DCC"][0] <= 10.0
    same = stats(b.same_pair)
    if same:
        out["same_dataset_means"] = {m: round(v[0], 3) for m, v in same.items()}
    return out
