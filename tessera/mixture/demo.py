"""A short, offline template-mixture showcase (``tessera demo``): four digit domains, four templates.

scikit-learn's bundled 8x8 digits become four tasks (original, boundary, blur, shear) at 16x16.
One MixtureNet (K = 4 templates, L = 6 layers, per-task mixture weights and heads) is co-trained on
all four; the demo reports each task's held-out accuracy and learned signature, writes the
mixture-weight heatmap, and exports one task as a plain exported network (checked equal).

>>> rows = demo("/tmp/tessera-demo")      # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

__all__ = ["demo"]


def demo(out_dir: str | Path, steps: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    """Train, plot and export a small mixture network; returns rows for a results table."""
    from ..data import sklearn_digit_domains
    from .exported import export, max_difference
    from .network import MixtureNet
    from .plots import plot_mixture_weights
    from .regularizers import mixture_clustering
    from .training import TaskSplit, train_tasks

    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    doms = sklearn_digit_domains(16, kinds=("original", "boundary", "blur", "shear"), seed=seed)
    perm = torch.randperm(1797, generator=torch.Generator().manual_seed(seed))
    tr, ev = perm[:1400], perm[1400:]
    tasks = {k: TaskSplit(x[tr], y[tr], x[ev], y[ev]) for k, (x, y) in doms.items()}
    torch.manual_seed(seed)
    net = MixtureNet.from_isometric({k: 10 for k in tasks}, num_templates=4, depth=6, channels=16, patch=4,
                                    head_channels=(64, 64), dropout=0.1, bn="mixed", seed=seed)
    res = train_tasks(net, tasks, steps=steps, batch=32, lr=3e-3, seed=seed, device="cpu",
                      regularizer=lambda t: mixture_clustering(net, t, alpha=0.01))
    png = plot_mixture_weights(net, out_dir / "mixture_weights.png", title="digits: 4 domains x 6 layers, K = 4")
    rows: list[dict[str, Any]] = []
    for t in tasks:
        sig, conf = net.signature(t)
        rows.append({"task": t, "accuracy": round(res["acc"][t], 4), "signature": "".join(map(str, sig)),
                     "min_confidence": round(min(conf), 3)})
    first = next(iter(tasks))
    plain = export(net, first)
    diff = max_difference(net, plain, tasks[first][2][:64], first)
    n_mix = sum(p.numel() for p in net.parameters())
    n_plain = sum(p.numel() for p in plain.parameters())
    rows.append({"task": f"export({first})", "accuracy": None, "signature": "max |diff| = %.1e" % diff,
                 "min_confidence": None, "params": n_plain, "mixture_params_all_tasks": n_mix})
    rows.append({"task": "heatmap", "accuracy": None, "signature": str(png), "min_confidence": None,
                 "seconds": round(time.perf_counter() - t0, 1)})
    return rows
