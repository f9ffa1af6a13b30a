"""Exact resume: 15 steps + resume to 30 == 30 straight, bit for bit."""
from __future__ import annotations

import json

import torch

from tessera.train import Trainer
from train_helpers import tiny_setup


def _run(out, steps=None, resume=False, **kw):
    model, tasks, cfg = tiny_setup(**kw)
    if resume:
        torch.rand(123)  # a fresh process would have consumed RNG differently; resume must not care
    tr = Trainer(model, tasks, cfg, out_dir=out)
    if resume:
        tr.load_checkpoint()
    final = tr.fit(steps)
    return tr, final


def test_resume_is_bit_exact(tmp_path):
    a, fa = _run(tmp_path / "A")
    b1, fb1 = _run(tmp_path / "B", steps=15)
    assert fb1["step"] == 15
    b, fb = _run(tmp_path / "B", steps=30, resume=True)
    assert fa["step"] == fb["step"] == 30
    assert fa["tasks"] == fb["tasks"]
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for k in a.ema.shadow:
        assert torch.equal(a.ema.shadow[k], b.ema.shadow[k]), k
    ja = json.loads((tmp_path / "A" / "final.json").read_text())
    jb = json.loads((tmp_path / "B" / "final.json").read_text())
    assert ja["tasks"] == jb["tasks"]
    # metrics.jsonl of the resumed run has the same training lines as the straight run
    la = [json.loads(s) for s in (tmp_path / "A" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(s) for s in (tmp_path / "B" / "metrics.jsonl").read_text().splitlines()]
    ta = [(r["step"], r["loss"], r["lr"]) for r in la if r["kind"] == "train"]
    tb = [(r["step"], r["loss"], r["lr"]) for r in lb if r["kind"] == "train"]
    assert ta == tb


def test_resume_with_cosine_warmup_and_adam(tmp_path):
    kw = dict(steps=20)
    model, tasks, cfg = tiny_setup(**kw)
    cfg.optim.name = "adam"
    cfg.optim.lr = 1e-2
    cfg.schedule.warmup_steps = 3
    a = Trainer(model, tasks, cfg, out_dir=tmp_path / "A")
    fa = a.fit()
    model, tasks, cfg2 = tiny_setup(**kw)
    cfg2.optim, cfg2.schedule = cfg.optim, cfg.schedule
    Trainer(model, tasks, cfg2, out_dir=tmp_path / "B").fit(7)
    model, tasks, cfg3 = tiny_setup(**kw)
    cfg3.optim, cfg3.schedule = cfg.optim, cfg.schedule
    b = Trainer(model, tasks, cfg3, out_dir=tmp_path / "B")
    assert b.load_checkpoint() == 7
    fb = b.fit()
    assert fa["tasks"] == fb["tasks"]
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k


def test_data_order_is_a_function_of_seed_and_step():
    model, tasks, cfg = tiny_setup()
    t1 = Trainer(model, tasks, cfg)
    first = [t1.batch_indices(0, k) for k in range(20)]
    t2 = Trainer(model, tasks, cfg)
    assert all(torch.equal(t2.batch_indices(0, k), first[k]) for k in reversed(range(20)))
    # an epoch (256 // 32 = 8 batches) covers distinct samples; the next epoch is a new permutation
    ep0 = torch.cat(first[:8])
    assert len(set(ep0.tolist())) == 256
    assert not torch.equal(torch.cat(first[8:16]), ep0)
