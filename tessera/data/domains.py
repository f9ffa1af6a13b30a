"""Digit domains for the domain-adaptation and multi-domain experiments, as batched torch ops.

Corruptions follow MNIST-C (Mu & Gilmer 2019) at its default severities: shear by +-0.4 rad (random
sign per image), scale to 70 % about the centre, shot noise ``Poisson(c x) / c`` with c = 3, rotation by
+-0.4 rad; plus the two augmentations of the compositional-models paper: boundary extraction
(morphological gradient, normalised per image) and Gaussian blur (sigma 2 px at 28 px). Images are first
resized to ``size``; pixel-scale parameters scale with ``size / 28``. Every kind is deterministic given
``seed`` and runs on the input's device.

>>> x = torch.rand(4, 1, 28, 28)
>>> digit_domain(x, "shear", size=32).shape
torch.Size([4, 1, 32, 32])
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F

from ..errors import DataError

__all__ = ["digit_domain", "load_digit_domain", "resize", "to_grayscale", "sklearn_digits", "sklearn_digit_domains",
           "DIGIT_DOMAINS", "DOMAIN_DEFAULTS"]

DIGIT_DOMAINS = ("original", "shear", "scale", "shot_noise", "boundary", "blur", "rotate")
# kind -> default strength: shear/rotate angle (rad), scale factor, shot-noise photon count c, blur sigma
# (pixels at 28 px). "original" and "boundary" take none.
DOMAIN_DEFAULTS: dict[str, float] = {"shear": 0.4, "scale": 0.7, "shot_noise": 3.0, "blur": 2.0, "rotate": 0.4}
_CHUNK = 8192


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of (N, C, H, W) to (N, C, size, size), clipped to [0, 1]."""
    if x.dim() != 4:
        raise DataError(f"resize: expected images (N, C, H, W), got shape {tuple(x.shape)}; add a channel dim")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise DataError(f"resize: size must be a positive int, got {size!r}")
    if x.shape[-2:] == (size, size):
        return x.clone()
    shrink = size < max(x.shape[-2:])
    out = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0.0, 1.0)


def to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB -> (N, 1, H, W) luma (ITU-R 601); grey input is returned as is."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)  # (N, 3, H, W) -> (N, 1, H, W)


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Sample x through per-image affine maps theta (N, 2, 3) from output to input coords; zeros outside."""
    out = torch.empty_like(x)
    for i in range(0, len(x), _CHUNK):
        xb, tb = x[i:i + _CHUNK], theta[i:i + _CHUNK]
        grid = F.affine_grid(tb, list(xb.shape), align_corners=False)  # (n, H, W, 2)
        out[i:i + _CHUNK] = F.grid_sample(xb, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.clamp_(0.0, 1.0)


def _signs(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1  # (n,) in {-1, +1}


def _band(n: int, sigma: float, device, dtype) -> torch.Tensor:
    """(n, n) Gaussian blur matrix with zero padding: ``x @ B`` blurs along the last axis."""
    t = torch.arange(n, device=device, dtype=dtype)
    b = torch.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2)
    r = torch.arange(-math.ceil(3 * sigma), math.ceil(3 * sigma) + 1, device=device, dtype=dtype)
    b = b * (t[:, None] - t[None, :]).abs().le(r.max()).to(dtype)
    return b / torch.exp(-0.5 * (r / sigma) ** 2).sum()  # normalised like a full kernel (zeros outside)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur as two small matmuls (much faster than conv2d for 28x28 batches)."""
    h, w = x.shape[-2:]
    bh, bw = _band(h, sigma, x.device, x.dtype), _band(w, sigma, x.device, x.dtype)
    return (bh.T @ x @ bw).clamp_(0.0, 1.0)  # (H, H) @ (N, C, H, W) @ (W, W)


def _max3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max filter (zero padding; inputs are >= 0) as separable shifted maxima."""
    p = F.pad(x, (1, 1, 1, 1))
    row = torch.maximum(torch.maximum(p[..., :, :-2], p[..., :, 1:-1]), p[..., :, 2:])   # (N, C, H+2, W)
    return torch.maximum(torch.maximum(row[..., :-2, :], row[..., 1:-1, :]), row[..., 2:, :])


def _boundary(x: torch.Tensor) -> torch.Tensor:
    dil = _max3(x)
    ero = 1.0 - _max3(1.0 - x)  # erosion = complement of the dilated complement (border counts as background)
    edge = (dil - ero).clamp_(min=0.0)                         # morphological gradient, (N, C, H, W)
    peak = edge.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (edge / peak).clamp_(0.0, 1.0)


def digit_domain(x: torch.Tensor, kind: str, size: int = 28, seed: int = 0, *,
                 strength: float | None = None) -> torch.Tensor:
    """Resize images (N, C, H, W) in [0, 1] to ``size`` and apply domain ``kind``; returns (N, C, size, size).

    kinds: original, shear, scale, shot_noise, boundary, blur, rotate. ``strength`` overrides the default
    parameter in :data:`DOMAIN_DEFAULTS`. The result is in [0, 1] and depends only on (x, kind, size, seed).
    """
    if kind not in DIGIT_DOMAINS:
        raise DataError(f"unknown digit domain {kind!r}; choose one of: {', '.join(DIGIT_DOMAINS)}")
    x = resize(x.float(), size)
    s = DOMAIN_DEFAULTS.get(kind, 0.0) if strength is None else float(strength)
    g = torch.Generator().manual_seed(int(seed))
    n = len(x)
    if kind == "original":
        return x
    if kind == "boundary":
        return _boundary(x)
    if kind == "blur":
        return _gaussian_blur(x, s * size / 28.0) if s > 0 else x
    if kind == "shot_noise":
        lam = (x * s).cpu()
        noisy = torch.poisson(lam, generator=g).to(x.device) / s  # photon counts -> intensity
        return noisy.clamp_(0.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    if kind == "scale":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / s              # sample further out -> content shrinks to s
    elif kind == "shear":
        a = _signs(n, g) * s                                    # MNIST-C: skimage shear angle, random sign
        theta[:, 0, 0] = 1.0
        theta[:, 0, 1] = -torch.sin(a)
        theta[:, 1, 1] = torch.cos(a)
    elif kind == "rotate":
        a = _signs(n, g) * s
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a), -torch.sin(a)
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a), torch.cos(a)
    return _warp(x, theta.to(x.device, x.dtype))


def load_digit_domain(domain: str, split: str = "train", size: int = 28, root=None, *, seed: int = 0,
                      channels: int = 1, strength: float | None = None, download: bool = False, verify: bool = True
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """A digit domain by name, ``"dataset"`` or ``"dataset:kind"`` (e.g. ``"mnist:shear"``, ``"svhn"``,
    ``"usps"``, ``"kmnist:boundary"``): loaded, converted to ``channels`` (1 = grey) and resized to ``size``.

    >>> x, y = load_digit_domain("mnist:scale", "test", size=32)   # doctest: +SKIP
    >>> tuple(x.shape)                                               # doctest: +SKIP
    (10000, 1, 32, 32)
    """
    from .images import load_images

    name, _, kind = domain.partition(":")
    x, y = load_images(name, split, root, download, verify=verify)
    if channels == 1:
        x = to_grayscale(x)
    elif channels == 3 and x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    elif channels != x.shape[1]:
        raise DataError(f"load_digit_domain: channels must be 1 or 3, got {channels}")
    return digit_domain(x, kind or "original", size=size, seed=seed, strength=strength), y


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8) in [0, 1]
    return x, torch.tensor(d.target, dtype=torch.int64)


def sklearn_digits(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1797 8x8 digits (bundled, offline) upsampled to (N, 1, size, size) in [0, 1]."""
    x, y = _digits()
    return resize(x, size), y.clone()


def sklearn_digit_domains(size: int = 16, kinds: tuple[str, ...] = ("original", "boundary", "blur", "shear"),
                          seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The bundled 8x8 digits as several domains: ``{kind: (images (1797, 1, size, size), labels (1797,))}``.

    Used by the offline demo and tests (no files needed).

    >>> doms = sklearn_digit_domains(16)
    >>> sorted(doms), tuple(doms["blur"][0].shape)
    (['blur', 'boundary', 'original', 'shear'], (1797, 1, 16, 16))
    """
    x, y = _digits()
    return {k: (digit_domain(x, k, size=size, seed=seed + i), y.clone()) for i, k in enumerate(kinds)}
