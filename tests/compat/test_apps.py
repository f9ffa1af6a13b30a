"""Sec. 5 helpers: RP adaptation keeps the rotation head, head update keeps the reference, transfer curves."""
import pytest
import torch

from tessera.compat import RotationTask, TestSet, evaluate, split_at
from tessera.compat.apps import adapt_with_rp, extend_head, finetune_curve, reinit, update_head, with_adapter
from tessera.compat.models import build, mobile_head
from tessera.train import TrainConfig

from compat_helpers import Killed, count_steps

X = torch.rand(32, 1, 8, 8)
Y = torch.randint(0, 10, (32,))


def _cfg(steps=3, checkpoint_every=0):
    return TrainConfig(steps=steps, batch_size=8, seed=0, log_every=0, checkpoint_every=checkpoint_every,
                       progress="off", ema={"enabled": False}, schedule={"name": "constant"},
                       optim={"name": "adam", "lr": 1e-2, "eps": 1e-8, "weight_decay": 0.0})


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a, m):
    return all(torch.equal(a[k], v) for k, v in m.state_dict().items())


def test_adapt_with_rp_updates_only_the_extractor():
    torch.manual_seed(0)
    ext, _ = split_at(build("resnet", width=2), "stage2")
    rp_head = split_at(build("resnet", num_classes=4, width=2), "stage2")[1]
    h0, e0 = _state(rp_head), _state(ext)
    res = adapt_with_rp(ext, rp_head, X, _cfg(), RotationTask("all"))
    assert _same(h0, rp_head) and not _same(e0, ext)
    assert set(res["losses"]) == {"target", "target.rp"}  # no classification loss on the unlabelled target
    assert res["trained_params"] == sum(p.numel() for p in ext.parameters())


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
    res = update_head(exts[1], head, X, Y, _cfg(2))
    assert _same(ref0, exts[1]) and not torch.equal(head.fc.weight[:5], old)
    assert res["trained_params"] == sum(p.numel() for p in head.parameters())


def test_finetune_curve_matches_direct_evaluation_and_resumes(tmp_path, monkeypatch):
    torch.manual_seed(0)
    ext, head = split_at(build("resnet", width=2), "stage2")
    test = TestSet(X, Y, [str(i) for i in range(10)])
    e0 = _state(ext)
    accs = finetune_curve(ext, head, X, Y, test, [0, 1, 3], _cfg(), out_dir=tmp_path / "a")
    assert len(accs) == 3 and _same(e0, ext)                        # works on copies
    assert accs[0] == evaluate(ext, head, X, Y)                      # step 0: right after recombination
    # killed in step 3 (after the checkpoint at 2), rerun with the same out_dir: same curve, 1 step run
    count_steps(monkeypatch, kill_at=3)
    cfg = _cfg(checkpoint_every=2)
    with pytest.raises(Killed):
        finetune_curve(ext, head, X, Y, test, [0, 1, 3], cfg, out_dir=tmp_path / "b")
    calls = count_steps(monkeypatch)
    assert finetune_curve(ext, head, X, Y, test, [0, 1, 3], cfg, out_dir=tmp_path / "b") == accs
    assert calls["n"] == 1
    r = reinit(head, seed=1)
    assert not torch.equal(r.fc.weight, head.fc.weight)
