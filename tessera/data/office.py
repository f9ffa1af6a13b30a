"""Office-Caltech10 SURF features (Gong et al. GFK release): ``fts`` (N, 800) histograms, ``labels`` 1..10."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..errors import DataError
from .fetch import require

__all__ = ["load_office_surf", "OFFICE_DOMAINS"]

OFFICE_DOMAINS = ("amazon", "caltech", "dslr", "webcam")


def load_office_surf(domain: str, root: str | os.PathLike | None = None, *, download: bool = False,
                     verify: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw SURF bag-of-words counts float32 ``(N, 800)`` and labels int64 ``(N,)`` in 0..9.

    No normalisation is applied (methods differ: L1, z-score, ...). Sizes: amazon 958, caltech 1123,
    dslr 157, webcam 295.
    """
    import scipy.io

    if domain not in OFFICE_DOMAINS:
        raise DataError(f"office_caltech10_surf: unknown domain {domain!r}; choose one of: {', '.join(OFFICE_DOMAINS)}")
    path = require("office_caltech10_surf", domain, root, download=download, verify=verify)["mat"]
    try:
        m = scipy.io.loadmat(path, variable_names=["fts", "labels"])
        x = np.asarray(m["fts"], dtype=np.float32)
        y = np.asarray(m["labels"]).reshape(-1).astype(np.int64) - 1
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a SURF .mat with fts and labels ({e}); delete it and download it again") from None
    if x.shape != (len(y), 800) or y.min() < 0 or y.max() > 9:
        raise DataError(f"{path}: fts {x.shape} / labels {y.min()}..{y.max() + 1}, expected (N, 800) and 1..10; "
                        f"delete it and download it again")
    return torch.from_numpy(x), torch.from_numpy(y)
