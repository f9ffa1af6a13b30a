"""Self-organization measures (do tasks share templates?) against hand computations."""
import pytest
import torch

from tessera.errors import ConfigError, ShapeError
from tessera.mixture import band_means, layer_sharing, signature_drift


def _kind(a, b):
    return "same_dataset" if a[0] == b[0] else "other"


def test_layer_sharing_by_pair_kind_by_hand():
    w = {"m1": torch.tensor([[0.7, 0.3], [0.2, 0.8]]),
         "m2": torch.tensor([[0.6, 0.4], [0.9, 0.1]]),
         "k1": torch.tensor([[0.1, 0.9], [0.4, 0.6]])}
    s = layer_sharing(w, _kind)
    # m1-m2 (same dataset): layer 0 both template 0 (overlap .6 + .3), layer 1 templates 1 vs 0 (.2 + .1)
    assert s["same_dataset"] == {"same_template": [1.0, 0.0], "overlap": [0.9, 0.3], "pairs": [1]}
    # m1-k1: [0 vs 1 -> 0, overlap .1+.3], [1 vs 1 -> 1, overlap .2+.6]; m2-k1: [0, .1+.4], [0, .4+.1]
    assert s["other"]["same_template"] == [0.0, 0.5] and s["other"]["pairs"] == [2]
    assert s["other"]["overlap"] == pytest.approx([(0.4 + 0.5) / 2, (0.8 + 0.5) / 2])


def test_signature_drift_and_bands():
    before = {"a": torch.tensor([[0.9, 0.1], [0.9, 0.1]])}
    after = {"a": torch.tensor([[1.0, 0.0], [0.3, 0.7]])}
    d = signature_drift(before, after)
    assert d == {"changed": 0.5, "confidence_before": 0.9, "confidence_after": 0.85, "l1": pytest.approx((0.2 + 1.2) / 2)}
    assert band_means([1.0, 0.0, 0.5, 0.5, 0.0], 2) == [0.5, 0.3333]        # layers 0-1 | 2-4
    with pytest.raises(ConfigError, match="share no task"):
        signature_drift(before, {"b": after["a"]})
    with pytest.raises(ShapeError):
        layer_sharing({"a": torch.ones(2, 2), "b": torch.ones(3, 2)})
