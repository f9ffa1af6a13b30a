"""Rotation labels for every angle, DCC on common classes only, RP with any self-supervised task, IIW."""
import pytest
import torch
from torch import nn

from tessera.compat import DCC, RP, RotationTask, make_networks
from tessera.compat.aux import SelfSupervisedTask, identical_init, load_pretrained
from tessera.errors import ConfigError, ShapeError


def test_rotation_labels_every_angle():
    img = torch.zeros(1, 1, 5, 5)
    img[0, 0, 0, 4] = 1.0  # a single pixel at the top-right corner
    xs, ys = RotationTask("all").make_batch(img)
    assert ys.tolist() == [0, 1, 2, 3] and xs.shape == (4, 1, 5, 5)
    corners = {0: (0, 4), 1: (0, 0), 2: (4, 0), 3: (4, 4)}  # counter-clockwise by 0/90/180/270 degrees
    for k, (r, c) in corners.items():
        assert ys[k] == k and xs[k, 0, r, c] == 1.0 and xs[k].sum() == 1.0
    x = torch.rand(64, 1, 6, 6)
    xr, yr = RotationTask("random").make_batch(x, torch.Generator().manual_seed(0))
    assert set(yr.tolist()) == {0, 1, 2, 3}
    for i in range(64):  # undoing the labelled rotation gives the original image back
        assert torch.equal(torch.rot90(xr[i], -int(yr[i]), dims=(1, 2)), x[i])
    with pytest.raises(ShapeError, match="square"):
        RotationTask().make_batch(torch.rand(2, 1, 4, 5))


def test_dcc_common_classes_only():
    head = nn.Linear(3, 2)
    dcc = DCC(head, [["cat", "dog", "car"], ["ship", "car", "cat"]])
    assert dcc.classes == ["cat", "car"]
    feats = torch.randn(4, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 1])  # task 0: cat, dog, car, dog
    loss = dcc.loss(nn.Identity(), feats, y, feats, task=0)
    keep = torch.tensor([0, 2])
    ref = nn.functional.cross_entropy(head(feats[keep]), torch.tensor([0, 1]), reduction="sum") / 4
    assert torch.allclose(loss, ref)
    loss.backward()
    assert feats.grad[1].abs().sum() == 0 and feats.grad[3].abs().sum() == 0 and feats.grad[0].abs().sum() > 0
    none = dcc.loss(nn.Identity(), feats, torch.tensor([1, 1]), feats[:2], task=0)
    assert none.item() == 0.0
    with pytest.raises(ConfigError, match="share none"):
        DCC(head, [["a", "b"], ["c", "d"]])
    only_car = DCC(nn.Linear(3, 1), [["cat", "dog", "car"], ["ship", "car", "cat"]], classes=["car"])
    assert only_car.classes == ["car"] and only_car.label_map[1].tolist() == [-1, 0, -1]
    with pytest.raises(ConfigError, match="subset"):
        DCC(head, [["cat", "dog"], ["cat", "car"]], classes=["dog"])
    with pytest.raises(ShapeError, match="num_classes=2"):
        DCC(nn.Linear(3, 5), [["a", "b"], ["a", "b"]]).loss(nn.Identity(), feats, y % 2, feats, 0)


class Flip:
    """A different self-supervised task: was the image flipped left-right?"""

    name, num_classes = "flip", 2

    def make_batch(self, x, generator=None):
        return torch.cat([x, x.flip(-1)]), torch.arange(2).repeat_interleave(len(x))


def test_rp_accepts_any_self_supervised_task():
    assert isinstance(Flip(), SelfSupervisedTask) and isinstance(RotationTask(), SelfSupervisedTask)
    ext = nn.Flatten()
    loss = RP(nn.Linear(16, 2), Flip()).loss(ext, torch.rand(3, 1, 4, 4))
    assert loss.ndim == 0 and loss > 0
    with pytest.raises(ShapeError, match="num_classes=4"):
        RP(nn.Linear(16, 2)).loss(ext, torch.rand(3, 1, 4, 4))
    with pytest.raises(ConfigError) as e:
        RP(nn.Linear(16, 2), object())
    assert str(e.value) == ("object is not a SelfSupervisedTask (needs name, num_classes, make_batch); "
                            "implement those three")


def test_identical_initial_weights():
    a, b = make_networks(lambda: nn.Linear(4, 3), 2, seed=1, iiw=True)
    c, d = make_networks(lambda: nn.Linear(4, 3), 2, seed=1, iiw=False)
    assert torch.equal(a.weight, b.weight) and not torch.equal(c.weight, d.weight)
    pre = nn.Linear(4, 3)
    e, f = make_networks(lambda: nn.Linear(4, 3), 2, seed=2, iiw=True, pretrained=pre)
    assert torch.equal(e.weight, pre.weight) and torch.equal(f.bias, pre.bias)
    src, g, h = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(4, 3)
    identical_init([g, h], src)                                         # every model gets the source's weights
    assert all(torch.equal(m.weight, src.weight) and torch.equal(m.bias, src.bias) for m in (g, h))
    g.reset_parameters()
    first, ms = g.weight.clone(), [g, nn.Linear(4, 3), nn.Linear(4, 3)]
    identical_init(ms)                                                      # no source: the first model's
    assert all(torch.equal(m.weight, first) for m in ms)
    with pytest.raises(ShapeError, match=r"^identical initial weights need identical architectures; 'weight' differs"):
        identical_init([nn.Linear(4, 3), nn.Linear(4, 2)])


def test_different_and_partial_pretrained_weights():
    build = lambda: nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))  # noqa: E731
    p1, p2 = build(), build()
    body = lambda m: {k: v for k, v in m.state_dict().items() if k.startswith("0.")}  # noqa: E731
    a, b = make_networks(build, 2, seed=5, pretrained=[body(p1), body(p2)])   # different pretrained bodies
    assert torch.equal(a[0].weight, p1[0].weight) and torch.equal(b[0].weight, p2[0].weight)
    fresh = make_networks(build, 2, seed=5)
    assert torch.equal(a[1].weight, fresh[0][1].weight) and torch.equal(b[1].weight, fresh[1][1].weight)
    c, d = make_networks(build, 2, seed=5, iiw=True, pretrained=body(p1))     # identical pretrained body
    assert torch.equal(c[0].weight, p1[0].weight) and torch.equal(c[1].weight, d[1].weight)
    with pytest.raises(ConfigError, match="its own pretrained"):
        make_networks(build, 2, seed=5, pretrained=body(p1))
    with pytest.raises(ConfigError, match="ONE set"):
        make_networks(build, 2, seed=5, iiw=True, pretrained=[body(p1), body(p2)])
    with pytest.raises(ShapeError, match="'1.weight' has shape"):
        load_pretrained(build(), {"1.weight": torch.zeros(5, 3)})
    with pytest.raises(ShapeError, match="not in the model"):
        load_pretrained(build(), {"fc.weight": torch.zeros(2, 3)})


def test_rotation_random_draws_come_from_the_generator_and_rp_uses_them():
    """mode="random": the labels are torch.randint(0, 4) from the given generator (the engine's per-step
    generator: resume and ranks agree); RP's loss is the cross-entropy of the head on exactly that batch,
    with RP's own generator when the call passes none."""
    x = torch.rand(16, 1, 4, 4)
    _, k = RotationTask("random").make_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(k, torch.randint(0, 4, (16,), generator=torch.Generator().manual_seed(3)))
    head, ext = nn.Linear(16, 4), nn.Flatten()
    xs, ys = RotationTask("random").make_batch(x, torch.Generator().manual_seed(5))
    by_hand = nn.functional.cross_entropy(head(ext(xs)), ys)
    rp = RP(head, RotationTask("random"), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(rp.loss(ext, x), by_hand)                                   # RP's generator
    plain = RP(head, RotationTask("random"))
    torch.testing.assert_close(plain.loss(ext, x, generator=torch.Generator().manual_seed(5)), by_hand)  # the call's
    rp = RP(head, RotationTask("random"), generator=torch.Generator().manual_seed(99))
    torch.testing.assert_close(rp.loss(ext, x, generator=torch.Generator().manual_seed(5)), by_hand)  # call wins
    assert RP(head, weight=0.25).weight == 0.25
    with pytest.raises(ConfigError, match="^RotationTask mode 'some'; choose 'all' or 'random'$"):
        RotationTask("some")


def test_network_seeds():
    """Network i of seed s is built after torch.manual_seed(1000 s + i) (IIW: 1000 s for all)."""
    build = lambda: nn.Linear(4, 3)  # noqa: E731
    nets = make_networks(build, 3, seed=2)
    for i, net in enumerate(nets):
        torch.manual_seed(2000 + i)
        assert torch.equal(net.weight, build().weight)
    torch.manual_seed(2000)
    ref = build()
    assert all(torch.equal(n.weight, ref.weight) for n in make_networks(build, 3, seed=2, iiw=True))


def test_dcc_messages_single_task_and_state():
    assert DCC(nn.Linear(3, 2), [["a", "b"]]).classes == ["a", "b"]                   # one task: all its classes
    with pytest.raises(ConfigError, match=r"^DCC needs classes common to all tasks, but these share none "
                                          r"\(task 0: \['a', 'b', 'c', 'd', 'e'\]; task 1: \['x'\]\); use RP"):
        DCC(nn.Linear(3, 2), [list("abcdef"), ["x"]])
    with pytest.raises(ConfigError, match=r"^DCC classes=\['dog', 'cow'\]: \['dog', 'cow'\] not among the common "
                                          r"classes \['cat'\]; pass a non-empty subset of them$"):
        DCC(nn.Linear(3, 1), [["cat", "dog"], ["cat", "car"]], classes=["dog", "cow"])
    common = [f"c{i:02d}" for i in range(12)]                                        # long lists are cut
    with pytest.raises(ConfigError) as e:
        DCC(nn.Linear(3, 1), [common, common], classes=[f"x{i}" for i in range(7)])
    assert str(e.value) == (f"DCC classes={[f'x{i}' for i in range(5)]}: {[f'x{i}' for i in range(3)]} not among "
                            f"the common classes {common[:10]}; pass a non-empty subset of them")
    with pytest.raises(ConfigError, match=r"^DCC classes=\[\]: empty not among"):
        DCC(nn.Linear(3, 1), [["cat", "dog"], ["cat", "car"]], classes=[])
    d = DCC(nn.Linear(3, 2), [["a", "b"], ["b", "a"]])
    assert d.weight == 1.0 and RP(nn.Linear(3, 4)).weight == 1.0 and DCC(nn.Linear(3, 2), [["a"]], 0.5).weight == 0.5
    assert sorted(d.state_dict()) == ["head.bias", "head.weight"]                      # label maps are not saved
