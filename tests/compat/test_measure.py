"""BN modes, recombination matrix (against a by-name loop), cross-correlation with the optimal permutation, heatmap."""
import copy

import numpy as np
import pytest
import torch

from tessera.compat import TestSet, cross_correlation, evaluate, recombination_accuracy, recombination_matrix, split_at
from tessera.compat.bn import EVAL_BN_MODES, batch_stats
from tessera.compat.measure import features, own_accuracy, predict
from tessera.compat.models import build
from tessera.compat.plots import heatmap
from tessera.errors import ConfigError, ShapeError


def _parts(seed, **kw):
    torch.manual_seed(seed)
    net = build("resnet", num_classes=3, width=2, **kw)
    net.train()
    net(torch.rand(32, 1, 8, 8) * 3 + 1)  # running statistics far from the test data's
    return split_at(net, net.split_point)


def _acc(logits, y):
    return float((logits.argmax(1) == y).float().mean())


def test_bn_modes_give_the_accuracy_of_a_hand_built_network_and_leave_buffers_alone():
    """Each BN mode's accuracy equals the accuracy of a copy put in that state by hand: "train" = eval()
    with the running statistics, "batch" = train-mode BN on the whole test set (one batch),
    "recompute" = running statistics set to the test set's mean and unbiased variance, then eval()."""
    ext, head = _parts(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    before = {k: v.clone() for k, v in ext.state_dict().items()}
    accs = {bn: evaluate(ext, head, x, y, bn=bn, batch_size=40) for bn in EVAL_BN_MODES}
    assert all(torch.equal(before[k], v) for k, v in ext.state_dict().items())
    assert ext.training  # mode restored
    net = torch.nn.Sequential(copy.deepcopy(ext), copy.deepcopy(head))
    with torch.no_grad():
        ref_train = _acc(net.eval()(x), y)
        ref_batch = _acc(copy.deepcopy(net).train()(x), y)        # train-mode BN: statistics of the batch
        rec = copy.deepcopy(net).train()
        for m in rec.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = 1.0                                   # one batch: running stats = its stats
        rec(x)
        ref_recompute = _acc(rec.eval()(x), y)
    assert accs == {"train": ref_train, "batch": ref_batch, "recompute": ref_recompute}
    assert len({ref_train, ref_batch}) == 2                    # the modes really differ on this network
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


def test_evaluate_maps_labels_into_the_head_by_class_name():
    """By hand: the features ARE the logits (Flatten extractor, identity head). Data classes a, b, c;
    head classes c, b, z: class a is dropped, b -> column 1, c -> column 0, and the argmax runs over the
    common columns 0, 1 only (column z never wins)."""
    rows = [(2, [5.0, 0.0, 9.0]),   # c: restricted argmax = column 0 = c (unrestricted: z)   correct
            (1, [0.0, 3.0, 1.0]),   # b: column 1 = b                                          correct
            (1, [4.0, 3.0, 0.0]),   # b: column 0 = c                                          wrong
            (0, [7.0, 0.0, 0.0]),   # a: not a class of the head, dropped (by index it would be "right")
            (2, [1.0, 2.0, 0.0])]   # c: column 1 = b                                          wrong
    y = torch.tensor([r[0] for r in rows])
    x = torch.tensor([r[1] for r in rows])[:, :, None, None]
    ext, head = torch.nn.Flatten(), torch.nn.Identity()
    kw = dict(data_classes=["a", "b", "c"], head_classes=["c", "b", "z"], bn="train")
    assert evaluate(ext, head, x, y, **kw) == 0.5
    assert evaluate(ext, head, x, y, restrict_logits=False, **kw) == 0.25                 # row 0 picks z
    assert evaluate(ext, head, x, y, bn="train") == pytest.approx(0.6)                               # no names: by index
    assert evaluate(ext, head, x, y, balanced=True, **kw) == 0.5                          # b 1/2, c 1/2
    eye = torch.eye(3)                                            # 3 classes: per-class accuracies 1, 0, 2/3
    y3, x3 = torch.tensor([0, 1, 1, 2, 2, 2]), eye[[0, 0, 2, 2, 2, 0]][:, :, None, None]
    assert evaluate(ext, head, x3, y3, bn="train", balanced=True) == pytest.approx((1 + 0 + 2 / 3) / 3)
    with pytest.raises(ConfigError, match="share none"):
        evaluate(ext, head, x, y, data_classes=["a", "b", "c"], head_classes=["x", "y", "w"])
    with pytest.raises(ConfigError, match="^evaluate: pass both data_classes and head_classes, or neither$"):
        evaluate(ext, head, x, y, data_classes=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"\['a', 'b', 'c', 'd', 'e'\]\.\.\. and the head's classes "
                                          r"\['u', 'v', 'w', 'x', 'y'\]\.\.\. share none"):
        evaluate(ext, head, x, y, data_classes=list("abcdef"), head_classes=list("uvwxyz"))


def _reference_matrix(extractors, heads, tests, head_classes):
    """M[i, j] by a Python loop over examples, matching classes by NAME: extractor i on tests[i]'s
    examples whose class head j knows, argmax over head j's columns whose class test i has."""
    out = np.zeros((len(extractors), len(heads)))
    for i, (e, t) in enumerate(zip(extractors, tests)):
        for j, (h, hc) in enumerate(zip(heads, head_classes)):
            cols = [k for k, c in enumerate(hc) if c in t.classes]
            right = total = 0
            for xi, yi in zip(t.x, t.y.tolist()):
                name = t.classes[yi]
                if name not in hc:
                    continue
                with torch.no_grad():
                    logits = h(e(xi[None]))[0]
                best = max(cols, key=lambda k: float(logits[k]))
                right += hc[best] == name
                total += 1
            out[i, j] = right / total
    return out


def test_recombination_matrix_maps_classes_by_name_and_the_metric_excludes_the_diagonal():
    g = torch.Generator().manual_seed(0)
    exts = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6)) for _ in range(3)]
    classes = [["a", "b", "c", "d"], ["d", "c", "x"], ["b", "y", "a", "d", "c"]]
    heads = [torch.nn.Linear(6, len(c)) for c in classes]
    tests = []
    for c in classes:
        y = torch.arange(30) % len(c)
        tests.append(TestSet(torch.randn(30, 3, 2, 2, generator=g), y, c))
    m = recombination_matrix(exts, heads, tests, bn="train")
    ref = _reference_matrix(exts, heads, tests, classes)
    np.testing.assert_allclose(m, ref, rtol=0, atol=1e-6)   # float32 means of counts
    assert len(set(np.round(m.ravel(), 6))) > 3                      # a matrix of distinct accuracies
    off = [ref[i, j] for i in range(3) for j in range(3) if i != j]
    assert recombination_accuracy(m) == pytest.approx(sum(off) / 6)
    assert own_accuracy(m) == pytest.approx((ref[0, 0] + ref[1, 1] + ref[2, 2]) / 3)
    # data="head": every pair on the HEAD's test set, all of whose classes the head knows
    mh = recombination_matrix(exts, heads, tests, data="head", bn="train")
    ref_h = np.array([[_reference_matrix([e], [h], [t], [c])[0, 0] for h, t, c in zip(heads, tests, classes)]
                      for e in exts])
    np.testing.assert_allclose(mh, ref_h, rtol=0, atol=1e-6)   # float32 means of counts


def _bn_parts(seed=0):
    torch.manual_seed(seed)
    ext = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.BatchNorm2d(3), torch.nn.Flatten())
    ext[1].running_mean.fill_(2.0)                                    # far from the test data's statistics
    return ext, torch.nn.Linear(12, 3)


def test_defaults_are_batch_statistics_over_batches_of_500_in_seed_0_order():
    """More than 500 images: the default batches (500, shuffled with seed 0) decide the batch statistics
    (heavy-tailed image scales, so that moving even one image between batches flips a prediction)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(700, 1, 2, 2, generator=g) * torch.exp(2 * torch.randn(700, generator=g))[:, None, None, None]
    ext, head = _bn_parts()
    explicit = dict(bn="batch", batch_size=500, seed=0)
    default_logits = predict(ext, head, x)
    torch.testing.assert_close(default_logits, predict(ext, head, x, **explicit), rtol=0, atol=0)
    for other in (dict(bn="batch", batch_size=501, seed=0), dict(bn="batch", batch_size=500, seed=1),
                  dict(bn="train", batch_size=500, seed=0)):
        assert not torch.allclose(default_logits, predict(ext, head, x, **other))
    torch.testing.assert_close(features(ext, x), features(ext, x, **explicit), rtol=0, atol=0)
    y = default_logits.argmax(1)                                  # labels: the default predictions (accuracy 1)
    assert evaluate(ext, head, x, y) == 1.0
    assert evaluate(ext, head, x, y, bn="batch", batch_size=501) < 1.0 and evaluate(ext, head, x, y, seed=1) < 1.0
    t = TestSet(x, y, ["a", "b", "c"])
    assert recombination_matrix([ext], [head], [t])[0, 0] == 1.0
    assert recombination_matrix([ext], [head], [t], batch_size=501)[0, 0] < 1.0
    assert recombination_matrix([ext], [head], [t], seed=1)[0, 0] < 1.0
    for other in (dict(bn="batch", batch_size=64, seed=0), dict(bn="batch", batch_size=500, seed=3),
                  dict(bn="train")):
        assert recombination_matrix([ext], [head], [t], **other)[0, 0] == evaluate(ext, head, x, y, **other)


def test_recombination_matrix_arguments():
    g = torch.Generator().manual_seed(1)
    exts = [torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)) for _ in range(3)]
    heads = [torch.nn.Linear(3, 3) for _ in range(2)]
    tests = [TestSet(torch.randn(20, 1, 2, 2, generator=g), torch.arange(20) % 3, c)
             for c in (["a", "b", "c"], ["c", "a", "b"])]
    # head_classes given: they, not the tests' classes, name each head's outputs
    hc = [["b", "c", "a"], ["a", "c", "x"]]
    m = recombination_matrix(exts[:2], heads, tests, head_classes=hc, bn="train")
    np.testing.assert_allclose(m, _reference_matrix(exts[:2], heads, tests, hc), rtol=0, atol=1e-6)
    # data="head": 3 extractors may meet 2 heads (each on its own test set)
    assert recombination_matrix(exts, heads, tests, data="head", bn="train").shape == (3, 2)
    with pytest.raises(ShapeError, match="^3 extractors but 2 test sets; pass one test set per extractor$"):
        recombination_matrix(exts, heads, tests)
    with pytest.raises(ShapeError, match="^pass head_classes \\(one list per head\\) or one test set per head$"):
        recombination_matrix(exts[:2], heads, tests, head_classes=hc[:1])
    with pytest.raises(ConfigError, match="^recombination_matrix data='both'; choose 'extractor' or 'head'$"):
        recombination_matrix(exts[:2], heads, tests, data="both")


def test_recombination_accuracy_by_hand():
    m = np.array([[0.9, 0.2, 0.4], [0.6, 1.0, 0.8], [0.0, 0.5, 0.7]])
    assert recombination_accuracy(m) == pytest.approx(2.5 / 6)           # off-diagonal only
    assert own_accuracy(m) == pytest.approx(2.6 / 3)
    assert recombination_accuracy([[1, 0], [1, 1]]) == 0.5 and own_accuracy([[1, 0], [1, 1]]) == 1.0   # 2 tasks
    for bad in (np.ones((1, 1)), np.ones((2, 3))):
        with pytest.raises(ShapeError, match=r"^recombination accuracy needs a square matrix of at least 2 tasks, got \("):
            recombination_accuracy(bad)


def test_cross_correlation_against_numpy_corrcoef():
    """Per-channel Pearson correlation (np.corrcoef over images and positions) on features with very
    different per-channel offsets and scales; sorted descending."""
    g = torch.Generator().manual_seed(0)
    fa = torch.randn(50, 4, 3, 3, generator=g) * torch.tensor([1.0, 5.0, 0.1, 2.0])[:, None, None] \
        + torch.tensor([10.0, -3.0, 7.0, 0.5])[:, None, None]
    fb = 0.3 * fa + torch.randn(50, 4, 3, 3, generator=g) * torch.tensor([0.1, 4.0, 0.5, 1.0])[:, None, None] + 4.0
    ref = [np.corrcoef(fa[:, c].reshape(-1).numpy(), fb[:, c].reshape(-1).numpy())[0, 1] for c in range(4)]
    out = cross_correlation(fa, fb)
    assert out["mean"] == pytest.approx(np.mean(ref), rel=1e-6)
    np.testing.assert_allclose(out["per_channel"], sorted(ref, reverse=True), rtol=1e-6)
    assert out["assignment"] == [0, 1, 2, 3]
    flat = cross_correlation(fa.flatten(2).mean(2), fb.flatten(2).mean(2))    # (N, C) features work too
    assert len(flat["per_channel"]) == 4
    with pytest.raises(ShapeError, match=r"^features must be \(N, C, \.\.\.\), got \(50,\)$"):
        cross_correlation(fa[:, 0, 0, 0], fb[:, 0, 0, 0])
    with pytest.raises(ShapeError, match=r"^features \(50, 4, 3, 3\) and \(50, 4, 2, 3\) must come from the same "
                                         r"images with the same spatial size$"):
        cross_correlation(fa, fb[:, :, :2])
    with pytest.raises(ShapeError, match=r"^4 vs 3 channels: direct"):
        cross_correlation(fa, fb[:, :3])


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
