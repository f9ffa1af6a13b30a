"""Bad input gives one clear error: empty domains, mismatched shapes, labels for an unsupervised method."""
from __future__ import annotations

import pytest
import torch

from tessera.adapt import Domain, DomainError, adapt_adda, adapt_m3sda
from tessera.adapt.domains import check_domains
from tessera.errors import ShapeError, TesseraError

from adapt_helpers import make_domain, tiny_comp


def test_empty_domain_is_refused():
    with pytest.raises(DomainError, match="empty"):
        Domain("t", torch.zeros(0, 1, 8, 8))


@pytest.mark.parametrize("y, match", [(torch.zeros(3), "int64"), (torch.zeros(2, dtype=torch.long), "labels"),
                                      (torch.tensor([0, -1, 0]), "negative")])
def test_bad_labels(y, match):
    with pytest.raises(DomainError, match=match):
        Domain("s", torch.rand(3, 1, 8, 8), y)


def test_bad_name_and_dtype():
    with pytest.raises(DomainError, match="name"):
        Domain("a b", torch.rand(2, 4))
    with pytest.raises(DomainError, match="float"):
        Domain("a", torch.zeros(2, 4, dtype=torch.long))


def test_different_input_shapes():
    a, c = make_domain("a"), Domain("c", torch.rand(5, 1, 10, 10))
    with pytest.raises(ShapeError, match="resize"):
        check_domains([a, c])
    model = tiny_comp()
    model.add_target("c", from_domain="a")
    with pytest.raises(ShapeError):
        adapt_adda(model, [a], c, steps=1)


def test_duplicate_names_and_unlabelled_sources():
    a = make_domain("a")
    with pytest.raises(DomainError, match="twice"):
        check_domains([a, make_domain("a")])
    with pytest.raises(DomainError, match="no labels"):
        check_domains([a.unlabeled()], labeled=True)


@pytest.mark.parametrize("method", [adapt_adda, adapt_m3sda])
def test_labelled_target_is_refused_by_unsupervised_methods(domains, method):
    sources, target = domains
    labelled = make_domain("t", shift=0.6)
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    with pytest.raises(DomainError, match="unsupervised") as err:
        method(model, sources, labelled, steps=1)
    assert isinstance(err.value, TesseraError) and "\n" not in str(err.value)
    method(model, sources, labelled.unlabeled(), steps=1, batch_size=8, pool=8)  # the fix works


def test_unknown_target_domain(domains):
    sources, target = domains
    with pytest.raises(TesseraError, match="add_target"):
        adapt_adda(tiny_comp(), sources, target, steps=1)
