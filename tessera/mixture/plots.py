"""Self-organization plots (paper 002, Fig. 2): which template each layer of each task uses.

One PNG: on top a tasks x layers strip coloured by the argmax template (opacity = confidence,
the template index written in each cell), below one heatmap per task of its mixture weights
(templates x layers). Uses matplotlib when installed, else Pillow.

>>> import tempfile, os
>>> w = {"a": torch.eye(3), "b": torch.eye(3).flip(0)}
>>> p = plot_mixture_weights(w, os.path.join(tempfile.mkdtemp(), "mw.png"))
>>> p.stat().st_size > 0
True
"""
from __future__ import annotations

import os
from pathlib import Path
import torch
from torch import Tensor

from ..errors import ShapeError

__all__ = ["plot_mixture_weights", "weights_of"]


def weights_of(model_or_weights) -> dict[str, Tensor]:
    """``{task: (L, K) mixture weights}`` from a MixtureNet or a mapping (checked)."""
    w = model_or_weights.mixture_weights() if hasattr(model_or_weights, "mixture_weights") else dict(model_or_weights)
    if not w:
        raise ShapeError("no mixture weights to plot; pass a MixtureNet or {task: (L, K) tensor}")
    shapes = {tuple(torch.as_tensor(v).shape) for v in w.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ShapeError(f"mixture weights must all be (L, K) tensors of one shape, got {sorted(shapes)}")
    return {k: torch.as_tensor(v).detach().float().cpu() for k, v in w.items()}


def plot_mixture_weights(model_or_weights, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write the signature strip + per-task heatmaps as a PNG; returns the path."""
    w = weights_of(model_or_weights)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt  # noqa: F401
    except Exception:  # pragma: no cover - exercised only without matplotlib
        return _plot_pillow(w, path)
    return _plot_mpl(w, path, title)


def _plot_mpl(w: dict[str, Tensor], path: Path, title: str | None) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    names = list(w)
    L, K = next(iter(w.values())).shape
    T = len(names)
    cmap = plt.get_cmap("tab10" if K <= 10 else "tab20")
    fig = plt.figure(figsize=(max(5.0, 0.45 * L + 2.5), 0.45 * T + T * (0.22 * K + 0.45) + 1.2))
    gs = fig.add_gridspec(T + 1, 1, height_ratios=[max(T, 1) * 1.4] + [K * 0.5 + 0.6] * T, hspace=0.6)
    ax = fig.add_subplot(gs[0])
    img = torch.ones(T, L, 4)
    for t, n in enumerate(names):
        conf, idx = w[n].max(-1)
        for l in range(L):
            img[t, l] = torch.tensor(to_rgba(cmap(int(idx[l]) % cmap.N), alpha=float(conf[l]) * 0.85 + 0.15))
            ax.text(l, t, str(int(idx[l])), ha="center", va="center", fontsize=7)
    ax.imshow(img.numpy(), aspect="auto", interpolation="nearest")
    ax.set_yticks(range(T), names, fontsize=7)
    ax.set_xticks(range(L), [str(l) for l in range(L)], fontsize=7)
    ax.set_xlabel("layer (colour = template, opacity = confidence)", fontsize=8)
    ax.set_title(title or "learned signatures", fontsize=9)
    for t, n in enumerate(names):
        a = fig.add_subplot(gs[t + 1])
        im = a.imshow(w[n].T.numpy(), aspect="auto", vmin=0.0, vmax=1.0, cmap="viridis", interpolation="nearest")
        a.set_ylabel(n, fontsize=7, rotation=0, ha="right", va="center")
        a.set_yticks(range(K), [str(k) for k in range(K)], fontsize=6)
        a.set_xticks(range(L), [str(l) for l in range(L)] if t == T - 1 else [], fontsize=6)
    fig.colorbar(im, ax=fig.axes[1:], fraction=0.02, pad=0.01, label="mixture weight")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _plot_pillow(w: dict[str, Tensor], path: Path) -> Path:  # pragma: no cover - fallback
    from PIL import Image, ImageDraw

    names = list(w)
    L, K = next(iter(w.values())).shape
    cell, left = 14, 90
    h = (len(names) + 1) * (K + 1) * cell
    im = Image.new("RGB", (left + L * cell + 10, h + 10), "white")
    d = ImageDraw.Draw(im)
    y = 5
    for n in names:
        d.text((4, y + K * cell // 2 - 5), n[:14], fill="black")
        for l in range(L):
            for k in range(K):
                v = int(255 * (1.0 - float(w[n][l, k])))
                d.rectangle([left + l * cell, y + k * cell, left + (l + 1) * cell - 1, y + (k + 1) * cell - 1],
                            fill=(v, v, 255))
        y += (K + 1) * cell
    im.save(path)
    return path
