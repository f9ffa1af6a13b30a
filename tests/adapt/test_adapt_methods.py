"""ADDA and moment matching on the engine: hand-written reference steps, exact resume, 2-process gloo."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from adapt_helpers import make_domain, tiny_comp
from tessera.adapt import ADDA, MomentMatching, adapt_adda, adapt_m3sda
from tessera.adapt import adversarial, moments
from tessera.adapt.adversarial import Discriminator
from tessera.adapt.moments import classifier_discrepancy, moment_distance
from tessera.adapt.training import feature_pool
from tessera.train import Task, Trainer, TrainConfig
from gloo import free_port, set_env, shutdown

STEPS, B = 3, 16


def _setup(seed: int = 0):
    """A source-trained-looking tiny model (deterministic), its target 't', sources and target domain."""
    sources = [make_domain("a", seed=1), make_domain("b", shift=0.2, seed=2)]
    target = make_domain("t", shift=0.6, labeled=False, seed=3)
    model = tiny_comp(seed=seed)
    model.add_target("t", from_domain="a")
    return model, sources, target


def _cfg(steps: int = STEPS) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=B, seed=0, device="cpu", log_every=0, checkpoint_every=0,
                       progress="off", ema={"enabled": False})


def _adam_lr(lr: float, final: float | None, k: int, steps: int) -> float:
    """The linear ramp of App. D.2, by hand: lr at step 0, final at step steps-1."""
    return lr if final is None else lr + (final - lr) * k / (steps - 1)


def _draws(target, k: int, keys):
    """The engine's documented draws at step k: the target batch and one generator per key."""
    tr = Trainer(nn.Linear(1, 1), [Task("t", train=target.x)], _cfg())
    idx = tr.batch_indices(0, k)
    tr.step = k
    return target.x[idx], [tr.generator(key) for key in keys]


def test_adda_equals_a_hand_written_reference():
    model, sources, target = _setup()
    pool = torch.cat([f for f, _ in feature_pool(model, sources, 16, embed=False)])      # (32, C, H, W)
    torch.manual_seed(9)                     # a discriminator that calls some target samples "target" (step 0):
    disc = Discriminator.for_features(pool.shape[1:], hidden=8)      # disc_acc's two halves both matter
    ref_model, ref_disc = copy.deepcopy(model), copy.deepcopy(disc)
    method = ADDA(model, "t", pool, disc, lr=0.05, final_lr=0.01, disc_lr=0.02, disc_final_lr=0.002)
    Trainer(model, [Task("t", train=target.x)], _cfg(), method=method).fit()

    # the reference: Adam (betas 0.5/0.999 for the discriminator), linear LRs, discriminator first,
    # then the target against the UPDATED discriminator with inverted labels
    ref_model.set_adapt_mode("t", False)
    opt_d = torch.optim.Adam(ref_disc.parameters(), lr=0.02, betas=(0.5, 0.999))
    logits = ref_model.net.mixture["t"]
    opt_t = torch.optim.Adam([logits], lr=0.05)
    hist = []
    for k in range(STEPS):
        opt_d.param_groups[0]["lr"] = _adam_lr(0.02, 0.002, k, STEPS)
        opt_t.param_groups[0]["lr"] = _adam_lr(0.05, 0.01, k, STEPS)
        xt, (g,) = _draws(target, k, [0])
        fs = pool[torch.randint(len(pool), (B,), generator=g)]
        ft = ref_model.features(xt, "t")
        ls, lt = ref_disc(fs), ref_disc(ft.detach())
        d_loss = 0.5 * (-F.logsigmoid(ls).mean() - F.logsigmoid(-lt).mean())     # BCE: source 1, target 0
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        g_loss = -F.logsigmoid(ref_disc(ft)).mean()                             # BCE against "source" (1)
        opt_t.zero_grad()
        g_loss.backward()
        opt_t.step()
        hist.append({"disc_loss": float(d_loss.detach()), "target_loss": float(g_loss.detach()),
                     "disc_acc": 0.5 * (float((ls > 0).float().mean()) + float((lt < 0).float().mean())),
                     "target_right": float((lt < 0).float().mean())})
    torch.testing.assert_close(model.net.mixture["t"], logits, rtol=0, atol=1e-6)
    for p, q in zip(disc.parameters(), ref_disc.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert len(method.history) == len(hist) == STEPS
    assert any(0 < r["target_right"] < 1 for r in hist)                         # not a degenerate disc_acc
    for h, r in zip(method.history, hist):
        assert h["disc_loss"] == pytest.approx(r["disc_loss"], abs=1e-6)
        assert h["target_loss"] == pytest.approx(r["target_loss"], abs=1e-6)
        assert h["disc_acc"] == pytest.approx(r["disc_acc"], abs=1e-6)
    assert not torch.equal(model.net.mixture["t"], model.net.mixture["a"])      # it really moved


def _critics(model, seed=0):
    torch.manual_seed(seed)
    return [nn.Sequential(nn.Dropout(0.0), copy.deepcopy(h)) for h in model.heads]


@pytest.mark.parametrize("order", [2, 3])
def test_moment_matching_equals_a_hand_written_reference(order):
    model, sources, target = _setup()
    pools = feature_pool(model, sources, 16, embed=True)                            # 2 x ((16, E), (16,))
    critics = _critics(model)
    ref_model, ref_critics = copy.deepcopy(model), copy.deepcopy(critics)
    per = 8
    method = MomentMatching(model, "t", pools, critics, per_source=per, lr=0.05, final_lr=0.01, clf_lr=0.02,
                            moment_weight=0.7, discrepancy_weight=1.3, k=order)
    Trainer(model, [Task("t", train=target.x)], _cfg(), method=method).fit()

    ref_model.set_adapt_mode("t", False)
    c1, c2 = ref_critics
    opt_c = torch.optim.Adam([p for c in ref_critics for p in c.parameters()], lr=0.02)
    logits = ref_model.net.mixture["t"]
    opt_t = torch.optim.Adam([logits], lr=0.05)
    for k in range(STEPS):
        opt_t.param_groups[0]["lr"] = _adam_lr(0.05, 0.01, k, STEPS)
        xt, gens = _draws(target, k, range(len(pools)))
        idx = [torch.randint(len(e), (per,), generator=g) for (e, _), g in zip(pools, gens)]
        es = [e[i] for (e, _), i in zip(pools, idx)]
        ys = torch.cat([y[i] for (_, y), i in zip(pools, idx)])
        et = ref_model.embed(ref_model.features(xt, "t"))
        src = torch.cat(es)
        clf = (F.cross_entropy(c1(src), ys) + F.cross_entropy(c2(src), ys)
               - classifier_discrepancy(c1(et.detach()), c2(et.detach())))
        opt_c.zero_grad()
        clf.backward()
        opt_c.step()
        # M3SDA's weighting: (source-target pairs) + (source-source pairs), raw moments of order 1 .. k
        loss = 0.7 * moment_distance(es + [et], k=order, target=-1) + 1.3 * classifier_discrepancy(c1(et), c2(et))
        opt_t.zero_grad()
        loss.backward()
        opt_t.step()
    torch.testing.assert_close(model.net.mixture["t"], logits, rtol=0, atol=1e-6)
    for p, q in zip(method.critics.parameters(), [p for c in ref_critics for p in c.parameters()]):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)
    assert not torch.equal(model.net.mixture["t"], model.net.mixture["a"])


RUNS = {"adda": lambda m, s, t, **kw: adapt_adda(m, s, t, lr=0.05, pool=16, disc_hidden=8, **kw),
        "m3sda": lambda m, s, t, **kw: adapt_m3sda(m, s, t, lr=0.05, pool=16, **kw)}
METHOD = {"adda": adversarial.ADDA, "m3sda": moments.MomentMatching}


@pytest.mark.parametrize("name", list(RUNS))
def test_resume_after_a_kill_equals_a_straight_run(tmp_path, monkeypatch, name):
    cls, steps = METHOD[name], 6
    model, sources, target = _setup()
    straight = RUNS[name](model, sources, target, steps=steps, batch_size=B, seed=3)

    calls = {"n": 0}
    original = cls.training_step

    def counted(self, trainer, step):
        calls["n"] += 1
        if calls["n"] > 5 and calls.get("kill"):
            raise RuntimeError("simulated kill in step 6")
        yield from original(self, trainer, step)

    monkeypatch.setattr(cls, "training_step", counted)
    calls["kill"] = True
    killed, _, _ = _setup()
    with pytest.raises(RuntimeError, match="simulated kill"):
        RUNS[name](killed, sources, target, steps=steps, batch_size=B, seed=3, out_dir=tmp_path, checkpoint_every=2)
    calls.update(n=0, kill=False)
    resumed, _, _ = _setup()                       # a rerun rebuilds the pre-adaptation model
    hist = RUNS[name](resumed, sources, target, steps=steps, batch_size=B, seed=3, out_dir=tmp_path,
                      checkpoint_every=2)
    assert calls["n"] == 2                         # steps 4 and 5 only: it continued from the step-4 checkpoint
    assert hist == straight                        # the history survives the kill
    for (k, v), w in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v, w), k


# ------------------------------------------------------------------------------------- two ranks
def _both(out: str | None = None) -> dict:
    res = {}
    for name, run in RUNS.items():
        model, sources, target = _setup()
        hist = run(model, sources, target, steps=STEPS, batch_size=B, seed=1, checkpoint_every=0, device="cpu")
        res[name] = {"logits": model.net.mixture["t"].tolist(), "history": hist}
    return res


def _worker(rank: int, world: int, port: int, out: str) -> None:
    set_env(rank, world, port)
    torch.set_num_threads(1)
    try:
        res = _both()
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(res, f)
    finally:
        shutdown()



@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_processes_equal_one_process(tmp_path):
    """Each rank takes half of every global batch (target and source draws); the averaged gradients,
    and moment matching's moments averaged over ranks, make the run equal the one-process run."""
    import torch.multiprocessing as mp
    mp.start_processes(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0 == r1
    single = _both()
    for name in RUNS:
        torch.testing.assert_close(torch.tensor(r0[name]["logits"]), torch.tensor(single[name]["logits"]),
                                   rtol=1e-5, atol=1e-6)
        for a, b in zip(r0[name]["history"], single[name]["history"]):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-6), name
