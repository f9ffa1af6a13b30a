"""Sec. 5 helpers: RP adaptation keeps the rotation head, head update keeps the reference, transfer curves."""
import torch

from tessera.compat import RotationTask, TestSet, TrainCfg, split_at
from tessera.compat.apps import adapt_with_rp, extend_head, finetune_curve, reinit, update_head, with_adapter
from tessera.compat.models import build, mobile_head

X = torch.rand(32, 1, 8, 8)
Y = torch.randint(0, 10, (32,))


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a, m):
    return all(torch.equal(a[k], v) for k, v in m.state_dict().items())


def test_adapt_with_rp_updates_only_the_extractor():
    torch.manual_seed(0)
    ext, _ = split_at(build("resnet", width=2), "stage2")
    rp_head = split_at(build("resnet", num_classes=4, width=2), "stage2")[1]
    h0, e0 = _state(rp_head), _state(ext)
    hist = adapt_with_rp(ext, rp_head, X, TrainCfg(steps=3, batch_size=8), RotationTask("all"))
    assert _same(h0, rp_head) and not _same(e0, ext) and "rp" in hist[-1] and "target" not in hist[-1]


def test_shared_head_across_architectures():
    exts = []
    for name, kw in (("resnet", {"width": 2}), ("wide_resnet", {"width": 2}), ("mobilenet", {"width": 2}), ("lenet", {"width": 2})):
        e, _ = split_at(build(name, **kw), "stage2")
        c = e(X[:2]).shape[1]
        exts.append(with_adapter(e, c, 8))
    head = mobile_head(8, 5)
    assert all(head(e(X)).shape == (32, 5) for e in exts)
    old = head.fc.weight.detach().clone()
    extend_head(head, 10)
    assert head.fc.out_features == 10 and torch.equal(head.fc.weight[:5], old)
    ref0 = _state(exts[1])
    update_head(exts[1], head, X, Y, TrainCfg(steps=2, batch_size=8))
    assert _same(ref0, exts[1]) and not torch.equal(head.fc.weight[:5], old)


def test_finetune_curve_and_reinit():
    torch.manual_seed(0)
    ext, head = split_at(build("resnet", width=2), "stage2")
    test = TestSet(X, Y, [str(i) for i in range(10)])
    e0 = _state(ext)
    accs = finetune_curve(ext, head, X, Y, test, [0, 1, 3], TrainCfg(batch_size=8, schedule="constant"))
    assert len(accs) == 3 and all(0 <= a <= 1 for a in accs) and _same(e0, ext)
    r = reinit(head, seed=1)
    assert not torch.equal(r.fc.weight, head.fc.weight)
