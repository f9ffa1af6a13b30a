"""Heatmap PNG of an extractor-by-head accuracy matrix (matplotlib if installed, else Pillow).

>>> import numpy as np, tempfile, os
>>> p = heatmap(np.array([[0.9, 0.5], [0.4, 0.8]]), ["f_a", "f_b"], ["h_a", "h_b"],
...             os.path.join(tempfile.mkdtemp(), "m.png"))
>>> p.stat().st_size > 0
True
"""
from __future__ import annotations

import io
import os
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ShapeError
from ..io import atomic_write_bytes

__all__ = ["heatmap"]


def _matplotlib_png(m: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 + 1.0 * len(cols)), max(3.4, 1.4 + 0.8 * len(rows))), dpi=120)
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(cols)), labels=list(cols), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("head")
    ax.set_ylabel("extractor")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{100 * m[i, j]:.1f}", ha="center", va="center",
                    color="black" if m[i, j] > 0.6 else "white", fontsize=9)
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _pillow_png(m: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    from PIL import Image, ImageDraw

    cell, left, top = 60, 110, 40
    img = Image.new("RGB", (left + cell * m.shape[1] + 10, top + cell * m.shape[0] + 40), "white")
    d = ImageDraw.Draw(img)
    d.text((5, 5), title, fill="black")
    for i in range(m.shape[0]):
        d.text((5, top + i * cell + cell // 2), str(rows[i])[:16], fill="black")
        for j in range(m.shape[1]):
            v = float(np.clip(m[i, j], 0, 1))
            col = (int(255 * (1 - v)), int(80 + 150 * v), int(255 * v))
            x0, y0 = left + j * cell, top + i * cell
            d.rectangle([x0, y0, x0 + cell - 2, y0 + cell - 2], fill=col)
            d.text((x0 + 12, y0 + cell // 2 - 5), f"{100 * v:.1f}", fill="black")
    for j, c in enumerate(cols):
        d.text((left + j * cell + 4, top + m.shape[0] * cell + 8), str(c)[:9], fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def heatmap(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
            path: str | os.PathLike, title: str = "") -> Path:
    """Write ``matrix`` (values in [0, 1], rows = extractors, columns = heads) as a PNG heatmap."""
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape != (len(row_labels), len(col_labels)):
        raise ShapeError(f"heatmap: matrix {m.shape} needs {len(row_labels)} row and {len(col_labels)} column "
                         f"labels; pass one label per row and column")
    try:
        data = _matplotlib_png(m, row_labels, col_labels, title)
    except ImportError:
        data = _pillow_png(m, row_labels, col_labels, title)
    return atomic_write_bytes(path, data)
