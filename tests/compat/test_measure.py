"""BN modes, recombination matrix, cross-correlation with the optimal permutation, heatmap."""
import numpy as np
import pytest
import torch

from tessera.compat import TestSet, cross_correlation, evaluate, recombination_accuracy, recombination_matrix, split_at
from tessera.compat.bn import EVAL_BN_MODES, batch_stats
from tessera.compat.measure import features
from tessera.compat.models import build
from tessera.compat.plots import heatmap
from tessera.errors import ConfigError, ShapeError


def _parts(seed, **kw):
    torch.manual_seed(seed)
    net = build("resnet", num_classes=3, width=2, **kw)
    net.train()
    net(torch.rand(32, 1, 8, 8) * 3 + 1)  # running statistics far from the test data's
    return split_at(net, net.split_point)


def test_bn_modes_run_and_leave_buffers_alone():
    ext, head = _parts(0)
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 3, (40,))
    before = {k: v.clone() for k, v in ext.state_dict().items()}
    accs = {bn: evaluate(ext, head, x, y, bn=bn, batch_size=16) for bn in EVAL_BN_MODES}
    assert all(0.0 <= a <= 1.0 for a in accs.values())
    assert all(torch.equal(before[k], v) for k, v in ext.state_dict().items())
    assert ext.training  # mode restored
    f_train, f_batch = features(ext, x, bn="train"), features(ext, x, bn="batch", batch_size=40)
    assert not torch.allclose(f_train, f_batch)
    with batch_stats(ext):
        ext.eval()
        assert torch.allclose(ext(x), f_batch, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown BN mode"):
        evaluate(ext, head, x, y, bn="nope")
    for norm in ("ln", "in"):
        e, h = _parts(1, norm=norm)
        assert evaluate(e, h, x, y, bn="train") == evaluate(e, h, x, y, bn="batch")  # no BN: modes agree
    e, h = _parts(2, l2_features=True)
    f = e(x)  # the extractor ends with the L2 layer (split point "l2")
    assert torch.allclose(f.flatten(1).norm(dim=1), torch.full((40,), f[0].numel() ** 0.5), rtol=1e-4)


def test_recombination_matrix_and_common_classes():
    (ea, ha), (eb, hb) = _parts(0), _parts(1)
    x, y = torch.rand(30, 1, 8, 8), torch.randint(0, 3, (30,))
    ta, tb = TestSet(x, y, ["a", "b", "c"]), TestSet(x, y, ["c", "b", "z"])
    m = recombination_matrix([ea, eb], [ha, hb], [ta, tb])
    assert m.shape == (2, 2) and 0 <= recombination_accuracy(m) <= 1
    # only examples of the common classes b, c count, mapped by name
    acc = evaluate(ea, ha, x, y, data_classes=["a", "b", "c"], head_classes=["c", "b", "z"])
    assert 0 <= acc <= 1
    with pytest.raises(ConfigError, match="share none"):
        evaluate(ea, ha, x, y, data_classes=["a", "b", "c"], head_classes=["x", "y", "w"])
    with pytest.raises(ShapeError):
        recombination_accuracy(np.ones((1, 1)))


def test_cross_correlation_permutation_is_at_least_direct():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        fa = torch.randn(200, 6, 2, 2, generator=g)
        mix = torch.randn(6, 6, generator=g)
        fb = torch.einsum("nchw,cd->ndhw", fa, mix) + 0.5 * torch.randn(200, 6, 2, 2, generator=g)
        direct, best = cross_correlation(fa, fb), cross_correlation(fa, fb, permute=True)
        assert best["mean"] >= direct["mean"] - 1e-12
        assert len(best["per_channel"]) == 6 and sorted(best["assignment"]) == list(range(6))
    perm = cross_correlation(fa, fa[:, [3, 1, 0, 2, 5, 4]], permute=True)
    assert perm["mean"] == pytest.approx(1.0) and cross_correlation(fa, fa[:, [3, 1, 0, 2, 5, 4]])["mean"] < 0.9
    with pytest.raises(ShapeError, match="permute=True"):
        cross_correlation(fa, fa[:, :4])


def test_heatmap_png(tmp_path):
    p = heatmap(np.array([[0.9, 0.1], [0.2, 0.8]]), ["f a", "f b"], ["h a", "h b"], tmp_path / "m.png", "t")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ShapeError):
        heatmap(np.ones((2, 2)), ["a"], ["b", "c"], tmp_path / "x.png")
