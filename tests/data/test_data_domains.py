"""Digit domains: shapes, ranges, determinism, and what each transform does."""
from __future__ import annotations

import pytest
import torch

from tessera.data import DIGIT_DOMAINS, digit_domain, resize, sklearn_digit_domains, split_indices, to_grayscale
from tessera.errors import DataError


@pytest.fixture(scope="module")
def digits():
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 6:22, 12:16] = 1.0  # a vertical bar
    x[8:, :, 12:16, 6:22] = 0.7  # a cross on half of them
    return x


@pytest.mark.parametrize("kind", DIGIT_DOMAINS)
@pytest.mark.parametrize("size", [16, 28, 32])
def test_shapes_ranges_determinism(digits, kind, size):
    a = digit_domain(digits, kind, size=size, seed=3)
    b = digit_domain(digits, kind, size=size, seed=3)
    assert a.shape == (16, 1, size, size) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1 and torch.isfinite(a).all()
    assert torch.equal(a, b)


def test_random_kinds_depend_on_seed(digits):
    for kind in ("shear", "shot_noise", "rotate"):
        assert not torch.equal(digit_domain(digits, kind, seed=0), digit_domain(digits, kind, seed=1)), kind
    for kind in ("original", "scale", "boundary", "blur"):
        assert torch.equal(digit_domain(digits, kind, seed=0), digit_domain(digits, kind, seed=1)), kind


def test_transforms_do_what_they_say(digits):
    orig = digit_domain(digits, "original")
    assert torch.equal(orig, digits)
    scaled = digit_domain(digits, "scale")
    assert scaled.sum() < 0.6 * orig.sum()            # 70 % size -> about half the ink
    rows = scaled[0, 0].sum(1).nonzero()
    assert rows.min() > 6 and rows.max() < 21          # the bar got shorter, about the centre
    edge = digit_domain(digits, "boundary")
    assert edge[:8, :, 8:20, 13:15].max() == 0          # the plain bar is flat inside -> no edge
    assert edge.amax(dim=(1, 2, 3)).eq(1).all()         # normalised per image
    blur = digit_domain(digits, "blur")
    assert blur.max() < 1 and abs(blur.sum() - orig.sum()) / orig.sum() < 0.02  # mass kept inside the frame
    shear = digit_domain(digits, "shear", strength=0.4)
    cols = [shear[0, 0, r].argmax().item() for r in (8, 20)]
    assert cols[0] != cols[1]                             # vertical bar becomes slanted
    noisy = digit_domain(digits, "shot_noise")
    assert noisy[digits == 0].eq(0).all()                 # Poisson(0) = 0: background stays clean
    assert not torch.equal(noisy, digits)
    assert torch.equal(digit_domain(digits, "blur", strength=0), digits)


def test_unknown_kind_and_helpers(digits):
    with pytest.raises(DataError, match="shear"):
        digit_domain(digits, "fog")
    assert resize(digits, 16).shape == (16, 1, 16, 16)
    rgb = torch.rand(2, 3, 8, 8)
    g = to_grayscale(rgb)
    assert g.shape == (2, 1, 8, 8)
    assert torch.allclose(g[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])


def test_sklearn_digit_domains():
    doms = sklearn_digit_domains(16, kinds=("original", "boundary", "blur", "shear", "scale"))
    assert set(doms) == {"original", "boundary", "blur", "shear", "scale"}
    for x, y in doms.values():
        assert x.shape == (1797, 1, 16, 16) and y.shape == (1797,) and y.dtype == torch.int64
        assert x.min() >= 0 and x.max() <= 1
        assert y.bincount().tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert not torch.equal(doms["original"][0], doms["shear"][0])


def test_split_indices():
    a, b = split_indices(100, [0.8, 0.2], seed=1)
    assert len(a) == 80 and len(b) == 20 and set(a.tolist()).isdisjoint(b.tolist())
    a2, _ = split_indices(100, [0.8, 0.2], seed=1)
    assert torch.equal(a, a2) and not torch.equal(a, split_indices(100, [0.8, 0.2], seed=2)[0])
    labels = torch.arange(100) % 4
    s, t = split_indices(100, [0.5, 0.25], seed=0, labels=labels)
    assert labels[s].bincount().tolist() == [12, 12, 12, 12] or labels[s].bincount().tolist() == [13, 13, 13, 13]
    assert len(t) == 24 or len(t) == 28
    with pytest.raises(DataError):
        split_indices(10, [0.8, 0.4])
