"""``tessera reproduce da-digits``: paper 002 Table 3 (Digits column), Table 12 and Table 9 (Digits).

Sources: MNIST and corrupted MNIST (shear, scale, shot noise) — plus SVHN (grey) when the data root
has it — each from a disjoint part of MNIST train; target: USPS, placed as MNIST's digits are (its
16x16 digit scaled into a 20x20 box centred in 28x28; ``usps_format="resize"`` stretches it to
28x28 instead). All images grey at 28x28. A compositional model (per-domain mixture logits over one template bank, shared adapters and
classifier) and a plain isometric model with as many blocks as the bank has templates (App. D.3) are
trained on the sources; then the target is adapted without labels by ADDA and moment matching,
moving only the target's mixture logits (Comp.) or its input adapter (IA). The compositional target
starts from the mixture weights of the source that scores best on labelled USPS *train* images (App.
D.2; ``init_source="entropy"`` picks label-free, by the lowest prediction entropy, instead).

Learning rates and BN mode. 1,000 labelled USPS *training* images are held out as a validation split;
the other 6,291 are the adaptation data (unlabelled for ADDA and moment matching, labelled for the
supervised rows). Each adaptation row runs every target learning rate of ``lr_grid`` (ADDA and moment
matching: 1e-4, the paper's moment-matching rate of App. D.4, to 1e-2) or ``ft_lr_grid`` (supervised
rows), each with the target's BN statistics frozen and updated from its batches while adapting (App.
D.2 only says the model is fine-tuned by minimizing the DA loss; a Keras model in training updates
them), from the same source-trained state, and keeps the pair with the best validation accuracy; the
USPS test set is only evaluated. Each BN mode's own validation-chosen result is reported too, next to
the target's BN statistics re-estimated with nothing trained: the control that says whether tuning
the mixture weights adds anything beyond the statistics. Target rates decay linearly to a tenth (as App. D.3/D.4's schedules do);
the discriminator uses App. D.3's 2e-4 -> 1e-5. The supervised rows train 600 steps (about 6
epochs of the adaptation data) and record their validation curve every 100 steps (convergence).

Rows (mean +- std error over seeds, accuracy in %, ``trained_params`` = parameters the row trained):
Table 3 rows on USPS test; Table 12 (each source's test accuracy, isometric vs compositional);
Table 9 (target accuracy after random / accuracy-based / learned / copied initialization of the
target mixture weights, and after supervised fine-tuning of them); a diagnostic row with only the
target's BN statistics re-estimated on USPS (no training).

The paper trains a 16-layer, 4-template model of ~135k parameters for 2 epochs on 4 full sources
(MNIST, shear, scale, SVHN) and adapts 10 epochs, on a GPU. The default budget here is sized for a
2-core CPU: see ``BUDGETS`` and the README.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..adapt import CompositionalDA, Domain, IsometricDA
from ..data import digit_domain, load_images, resize, to_grayscale
from ..errors import ConfigError, DataError
from ..results import Report
from ..threads import intra_op_threads
from . import RunOptions
from .da_common import collect, run_seed
from .da_protocol import AdaptConfig
from .units import Units

__all__ = ["run", "DigitsBudget", "BUDGETS", "load_domains", "PAPER_T3", "PAPER_T12", "PAPER_T9"]

PAPER_T3 = {"source_only": 95.75, "comp_source_only": 96.05, "ia_adda": 98.12, "comp_adda": 98.33,
            "ia_m3sda": 96.93, "comp_m3sda": 96.85, "comp_supervised": 98.25}
"""Table 3, Digits column."""
PAPER_T12 = {"mnist": (99.14, 99.29), "shot_noise": (97.63, 98.28), "shear": (98.79, 98.58),
             "scale": (98.18, 98.79), "svhn": (54.73, 89.16), "usps": (95.77, 96.05)}
"""Table 12: (isometric, compositional) test accuracy per domain; usps = source-only."""
PAPER_T9 = {"random": 93.76, "accuracy": 95.50, "learned": 95.95, "copy": 95.81}
"""Table 9, Digits: initial USPS accuracy (the fine-tuned row of the table is garbled in the text)."""
CORRUPTIONS = ("original", "shear", "scale", "shot_noise")
NAMES = {"original": "mnist", "shear": "shear", "scale": "scale", "shot_noise": "shot_noise"}


@dataclass
class DigitsBudget:
    """Data sizes, model shape and the protocol's step counts."""

    seeds: int = 3
    size: int = 28
    train_per_source: int = 12000     # disjoint MNIST train images per source
    test_per_source: int = 2000       # MNIST test images per source test set
    target_train: int | None = None   # USPS train images used (unlabelled for adaptation); None: all 7291
    target_test: int | None = None    # USPS test images; None: all 2007
    depth: int = 8
    templates: int = 4
    channels: int = 24
    patch: int = 4
    block: str = "inverted_residual"
    head_channels: tuple[int, int] = (64, 128)
    dropout: float = 0.3
    iso_depth: int | None = None      # None: = templates (App. D.3)
    usps_format: str = "mnist"        # "mnist": MNIST's 20x20 box centred in 28x28; "resize": 16x16 stretched to 28x28
    protocol: AdaptConfig = field(default_factory=lambda: _protocol())

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "protocol"}
        return {**d, "protocol": self.protocol.to_dict()}


def _protocol(**kw: Any) -> AdaptConfig:
    """App. D.2-D.4 settings, with a higher source learning rate (4e-3) for the shorter training here,
    mixture logits at 10x that rate; target learning rates chosen per row on the validation split."""
    base = dict(pretrain_steps=1000, lr=4e-3, final_lr=2e-5, mixture_lr_mult=10.0, adapt_steps=300,
                val_size=1000, lr_grid=(1e-4, 1e-3, 3e-3, 1e-2), ft_lr_grid=(3e-3, 1e-2, 3e-2),
                target_final_frac=0.1, ft_steps=600, ft_eval_every=100, learned_steps=100, pool=2000,
                bn_grid=("eval", "train"), other_bn_rows=False)
    return AdaptConfig(**{**base, **kw})


BUDGETS: dict[str, DigitsBudget] = {
    "quick": DigitsBudget(seeds=1, train_per_source=1000, test_per_source=300, target_train=1000, target_test=500,
                          depth=4, templates=2, channels=8, head_channels=(32, 64),
                          protocol=_protocol(pretrain_steps=100, adapt_steps=20, ft_steps=20, learned_steps=10,
                                             pool=200, batch_size=32, adapt_batch=32, val_size=200,
                                             lr_grid=(1e-3, 1e-2), ft_lr_grid=(1e-2, 3e-2), ft_eval_every=10)),
    "default": DigitsBudget(),
    # closer to App. D.2 (16 layers, 4 templates, 10 adaptation epochs of USPS); hours on a CPU
    "paper": DigitsBudget(depth=16, train_per_source=15000, test_per_source=10000,
                          protocol=_protocol(pretrain_steps=4000, adapt_steps=1140, ft_steps=1140)),
}


def _data_root(opts: RunOptions) -> Path | None:
    return opts.data_root


def load_domains(b: DigitsBudget, root: Path | None, data_seed: int = 0
                 ) -> tuple[list[Domain], list[Domain], Domain, Domain]:
    """(sources, source tests, USPS train (labelled), USPS test) for a budget."""
    g = torch.Generator().manual_seed(data_seed)
    xtr, ytr = load_images("mnist", "train", root)
    xte, yte = load_images("mnist", "test", root)
    perm = torch.randperm(len(xtr), generator=g)
    tperm = torch.randperm(len(xte), generator=g)[:b.test_per_source]
    n = b.train_per_source
    if n * len(CORRUPTIONS) > len(xtr):
        raise DataError(f"train_per_source={n} x {len(CORRUPTIONS)} sources exceeds MNIST train ({len(xtr)}); lower it")
    sources, tests = [], []
    for i, kind in enumerate(CORRUPTIONS):
        idx = perm[i * n:(i + 1) * n]
        sources.append(Domain(NAMES[kind], digit_domain(xtr[idx], kind, b.size, seed=data_seed + i), ytr[idx]))
        tests.append(Domain(NAMES[kind], digit_domain(xte[tperm], kind, b.size, seed=data_seed + 100 + i), yte[tperm]))
    try:
        sx, sy = load_images("svhn", "train", root)
        tx, ty = load_images("svhn", "test", root)
        si = torch.randperm(len(sx), generator=g)[:n]
        ti = torch.randperm(len(tx), generator=g)[:b.test_per_source]
        sources.append(Domain("svhn", resize(to_grayscale(sx[si]), b.size), sy[si]))
        tests.append(Domain("svhn", resize(to_grayscale(tx[ti]), b.size), ty[ti]))
    except DataError:
        pass  # SVHN is optional (not in the offline data folder)
    ux, uy = load_images("usps", "train", root)
    vx, vy = load_images("usps", "test", root)
    ui = torch.randperm(len(ux), generator=g)[:b.target_train or len(ux)]
    vi = torch.randperm(len(vx), generator=g)[:b.target_test or len(vx)]
    return (sources, tests, Domain("usps", usps_format(ux[ui], b.size, b.usps_format), uy[ui]),
            Domain("usps", usps_format(vx[vi], b.size, b.usps_format), vy[vi]))


def usps_format(x: torch.Tensor, size: int, kind: str = "resize") -> torch.Tensor:
    """USPS digits fill their 16x16 frame; MNIST digits sit in a 20x20 box centred in 28x28.

    ``"mnist"`` puts USPS in MNIST's format (box ``round(20 size / 28)`` padded to ``size``), the
    way MNIST itself was made from NIST; ``"resize"`` stretches the 16x16 image to ``size``.

    >>> usps_format(torch.ones(2, 1, 16, 16), 28).shape, float(usps_format(torch.ones(1, 1, 16, 16), 28, "mnist")[0, 0, 0, 0])
    (torch.Size([2, 1, 28, 28]), 0.0)
    """
    if kind == "resize":
        return resize(x, size)
    if kind != "mnist":
        raise DataError(f"unknown usps_format {kind!r}; choose 'mnist' (20x20 box in 28x28) or 'resize'")
    box = round(20 * size / 28)
    lo = (size - box) // 2
    return F.pad(resize(x, box), (lo, size - box - lo, lo, size - box - lo))


def build_model(b: DigitsBudget, sources: list[str], kind: str, seed: int) -> CompositionalDA | IsometricDA:
    """``"comp"``: the compositional model; ``"iso"``: the isometric baseline (``iso_depth`` blocks)."""
    torch.manual_seed(seed)
    kw = dict(channels=b.channels, patch=b.patch, block=b.block, head_channels=b.head_channels)
    if kind == "comp":
        return CompositionalDA.build(sources, 10, num_templates=b.templates, depth=b.depth, dropout=b.dropout,
                                     seed=seed, **kw)
    return IsometricDA.build(sources, 10, depth=b.iso_depth or b.templates, dropout=b.dropout, **kw)


def run(opts: RunOptions) -> dict[str, Any]:
    """Table 3 / 12 / 9 on digits (MNIST + corruptions [+ SVHN] -> USPS); writes ``opts.json``."""
    if opts.budget not in BUDGETS:
        raise ConfigError(f"unknown budget {opts.budget!r} for da-digits; choose one of: {', '.join(BUDGETS)}")
    b = replace(BUDGETS[opts.budget])
    seeds = opts.seeds if opts.seeds is not None else b.seeds
    with intra_op_threads(1):  # these small ops gain little from 2 threads and lose 10-50x on a busy CPU
        return _run(opts, b, seeds)


def _run(opts: RunOptions, b: DigitsBudget, seeds: int) -> dict[str, Any]:
    data = load_domains(b, _data_root(opts))
    sources = [d.name for d in data[0]]
    config = {**b.to_dict(), "seeds": seeds, "budget": opts.budget, "sources": sources, "target": "usps",
              "n_source_train": [len(d) for d in data[0]], "n_target_train": len(data[2]),
              "n_target_test": len(data[3])}
    report = Report("da-digits", config=config)
    units = Units(opts, "da-digits", {k: v for k, v in config.items() if k != "seeds"})
    per_seed = [run_seed(units, s, data, b.protocol, lambda kind, seed: build_model(b, sources, kind, seed))
                for s in range(seeds)]
    config["init_source_picked"] = [r["comp"]["info"]["init_source"] for r in per_seed]
    config["init_source_by_accuracy"] = [r["comp"]["info"]["init_source_by_accuracy"] for r in per_seed]
    config["seconds_per_seed"] = [r["seconds"] for r in per_seed]
    config["lr_selection"] = [{k: r[k]["info"].get("selection", {}) for k in ("comp", "iso")} for r in per_seed]
    collect(report, per_seed, sources, "digits -> usps", PAPER_T3, PAPER_T12, PAPER_T9)
    return report.write(opts.json)
