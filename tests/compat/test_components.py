"""split / recombine / save / load: identity, interface checks, clear errors, nothing loaded half-way."""
import json

import pytest
import torch
from torch import nn

from tessera import __version__
from tessera.compat import Component, Interface, load_component, recombine, save_component, split_at
from tessera.compat.components import components, read_manifest
from tessera.compat.models import NETS, build
from tessera.errors import CheckpointError, ShapeError

X = torch.rand(4, 1, 16, 16)


@pytest.mark.parametrize("name", NETS.names())
def test_recombining_own_parts_is_identity(name):
    net = build(name, num_classes=10, width=4).eval()
    ext, head = split_at(net, net.split_point)
    assert torch.equal(recombine(ext, head)(X), net(X))
    net.train()  # also with batch statistics
    assert torch.equal(recombine(ext, head)(X), net(X))


def test_split_nested_and_traced_module():
    net = build("resnet", width=4).eval()
    ext, head = split_at(net, "stage1.0")
    assert torch.equal(head(ext(X)), net(X))

    class Chain(nn.Module):  # not a Sequential: children are ordered by tracing
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3)
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU())

        def forward(self, x):
            return self.fc(self.body(x))

    m, x = Chain(), torch.rand(2, 1, 4, 4)
    e, h = split_at(m, "body", example=x)
    assert torch.equal(h(e(x)), m(x))
    with pytest.raises(ShapeError, match="pass example="):
        split_at(m, "body")
    with pytest.raises(ShapeError, match="pass example="):
        components(m, "body", (1, 4, 4), list("abc"))
    ce, ch = components(m, "body", None, list("abc"), example=x)   # the argument the message names
    assert ce.interface.input_shape == (1, 4, 4) and ce.interface.feature_shape == (8,) == ch.interface.feature_shape
    assert torch.equal(recombine(ce, ch)(x), m(x))
    bn_net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    wrapped = nn.Module()
    wrapped.a, wrapped.b = bn_net, nn.Flatten()
    wrapped.forward = lambda x: wrapped.b(wrapped.a(x))
    before = bn_net[1].running_mean.clone()
    split_at(wrapped, "a", example=torch.rand(3, 1, 2, 2) + 5)  # tracing leaves BN buffers alone
    assert torch.equal(bn_net[1].running_mean, before)

    class NotAChain(Chain):
        def forward(self, x):
            return self.fc(self.body(x) * 2)

    with pytest.raises(ShapeError, match="not a chain"):
        split_at(NotAChain(), "body", example=x)
    with pytest.raises(ShapeError, match="no child"):
        split_at(net, "nope")
    with pytest.raises(ShapeError, match="head would be empty"):
        split_at(net, "fc")


def test_recombine_mismatched_feature_shapes():
    a = build("resnet", width=4)
    b = build("resnet", width=8)
    ea, _ = components(a, "stage2", (1, 16, 16), list("0123456789"))
    _, hb = components(b, "stage2", (1, 16, 16), list("0123456789"))
    with pytest.raises(ShapeError, match=r"produces features \(16, 4, 4\) but the head accepts \(32, 4, 4\)"):
        recombine(ea, hb)
    with pytest.raises(ShapeError, match="extractor first"):
        recombine(hb, ea)
    with pytest.raises(ShapeError, match="head does not accept"):  # plain modules: caught at the first forward
        recombine(ea.module, hb.module)(X)


def _save_pair(tmp_path):
    net = build("resnet", width=4)
    net(X)  # non-trivial BN buffers
    e, h = components(net.eval(), "stage2", (1, 16, 16), [str(i) for i in range(10)],
                      {"net": "resnet", "kwargs": {"width": 4}, "split": "stage2"})
    save_component(tmp_path / "e", e.module, "extractor", e.interface)
    save_component(tmp_path / "h", h.module, "head", h.interface, task="mnist")
    return net, e, h


def test_manifest_roundtrip(tmp_path):
    net, e, h = _save_pair(tmp_path)
    m = read_manifest(tmp_path / "h")
    assert m["kind"] == "head" and m["feature_shape"] == [16, 4, 4] and m["classes"][3] == "3"
    assert m["tessera_version"] == __version__ and m["extra"] == {"task": "mnist"}
    e2 = load_component(tmp_path / "e", kind="extractor", expect_shape=(16, 4, 4))
    h2 = load_component(tmp_path / "h", kind="head")
    assert isinstance(e2, Component) and e2.interface == e.interface and h2.interface.classes == h.interface.classes
    assert torch.equal(recombine(e2, h2).eval()(X), net(X))
    for k, v in e.module.state_dict().items():
        assert torch.equal(v, e2.module.state_dict()[k])


def test_load_errors_leave_module_untouched(tmp_path):
    _save_pair(tmp_path)
    with pytest.raises(ShapeError, match="holds a head, expected a extractor"):
        load_component(tmp_path / "h", kind="extractor")
    with pytest.raises(ShapeError, match="produces features"):
        load_component(tmp_path / "e", expect_shape=(32, 4, 4))
    wrong = build("resnet", width=8)
    _, wrong_head = split_at(wrong, "stage2")
    before = {k: v.clone() for k, v in wrong_head.state_dict().items()}
    with pytest.raises(CheckpointError, match="has shape"):
        load_component(tmp_path / "h", build_fn=lambda m: wrong_head)
    assert all(torch.equal(before[k], v) for k, v in wrong_head.state_dict().items())
    with pytest.raises(CheckpointError, match="missing"):
        load_component(tmp_path / "h", build_fn=lambda m: nn.Linear(3, 3))
    man = tmp_path / "h" / "manifest.json"
    d = json.loads(man.read_text())
    d["tessera_version"] = "0.0.1"
    man.write_text(json.dumps(d))
    with pytest.raises(CheckpointError, match=r"written by tessera 0\.0\.1, this is tessera"):
        load_component(tmp_path / "h", build_fn=lambda m: pytest.fail("must not build before validating"))
    with pytest.raises(CheckpointError, match="no manifest.json"):
        load_component(tmp_path / "missing")


def test_interface_validation():
    with pytest.raises(ShapeError, match="kind"):
        Component(nn.Identity(), "body", Interface((1,)))
    assert Interface((8, None, None)).feature_shape == (8, None, None)


def test_rebuild_head_with_its_own_classes_and_split_point(tmp_path):
    net = build("resnet", num_classes=5, width=4, l2_features=True).eval()
    e, h = components(net, net.split_point, (1, 16, 16), list("abcde"),
                      {"net": "resnet", "kwargs": {"width": 4, "l2_features": True}, "split": None})
    save_component(tmp_path / "e", e.module, "extractor", e.interface)
    save_component(tmp_path / "h", h.module, "head", h.interface)
    assert torch.equal(recombine(load_component(tmp_path / "e"), load_component(tmp_path / "h")).eval()(X), net(X))
