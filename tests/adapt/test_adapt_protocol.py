"""Table 9 initializations, the per-seed protocol on tiny domains, and resumable per-seed units."""
from __future__ import annotations

import pytest
import torch
from adapt_helpers import make_domain, tiny_comp, tiny_iso

from tessera.adapt.init import accuracy_init, interpolated_logits, random_init
from tessera.experiments import RunOptions
from tessera.experiments.da_common import run_seed
from tessera.experiments.da_protocol import AdaptConfig, run_compositional, run_isometric
from tessera.experiments.units import Units


def test_interpolation_is_a_convex_combination_of_mixture_weights():
    w = {"a": torch.tensor([[0.9, 0.1], [0.2, 0.8]]), "b": torch.tensor([[0.5, 0.5], [0.6, 0.4]])}
    out = interpolated_logits(w, {"a": 1.0, "b": 3.0}).softmax(-1)
    assert torch.allclose(out, 0.25 * w["a"] + 0.75 * w["b"], atol=1e-6)
    model = tiny_comp()
    acc = accuracy_init(model, {"a": 80.0, "b": 20.0}).softmax(-1)
    expect = 0.8 * model.net.coefficients("a").detach() + 0.2 * model.net.coefficients("b").detach()
    assert torch.allclose(acc, expect, atol=1e-6)
    assert random_init(model, seed=1).shape == (3, 2)


def _cfg() -> AdaptConfig:
    return AdaptConfig(pretrain_steps=3, batch_size=16, adapt_steps=2, adapt_batch=16, pool=16, ft_steps=2,
                       learned_steps=2)


def _data():
    sources = [make_domain("a", seed=1), make_domain("b", shift=0.2, seed=2)]
    tests = [make_domain("a", n=12, seed=4), make_domain("b", n=12, shift=0.2, seed=5)]
    return sources, tests, make_domain("t", shift=0.6, seed=3), make_domain("t", n=12, shift=0.6, seed=6)


def test_protocol_rows_and_parameter_counts():
    sources, tests, ttr, tte = _data()
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, _cfg(), log=lambda m: None)
    ri = run_isometric(tiny_iso(), sources, ttr, tte, tests, _cfg(), log=lambda m: None)
    assert set(rc["acc"]) >= {"comp_source_only", "comp_adda", "comp_m3sda", "comp_supervised", "comp_stats_only",
                              "init:random", "ft:learned", "source:a", "comp_adda_bn_train"}
    assert rc["params"]["comp_adda"] == rc["params"]["comp_m3sda"] == 6        # L x K of the target
    assert ri["params"]["ia_adda"] == 8 * 16 + 16                                # input adapter conv + BN
    assert rc["info"]["init_source"] in ("a", "b")
    assert set(ri["acc"]) >= {"source_only", "ia_adda", "ia_m3sda", "ia_supervised", "source:b"}


def test_source_rows_equal_a_hand_evaluation_of_the_pretrained_model(monkeypatch):
    """Independent of the protocol's own evaluation: the pretrained network (captured right after source
    training) run by hand as a source domain gives the 'source:X' rows, and run as the chosen source on the
    target's test images gives 'Comp. source-only' (the target starts as a copy of that source)."""
    import copy

    import tessera.experiments.da_protocol as proto

    snap = {}
    real = proto.train_sources

    def spy(model, *a, **kw):
        out = real(model, *a, **kw)
        snap["model"] = copy.deepcopy(model)
        return out
    monkeypatch.setattr(proto, "train_sources", spy)
    sources, tests, ttr, tte = _data()
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, _cfg(), log=lambda m: None, table9=False)
    net = snap["model"].eval()

    def hand(d, as_domain):
        with torch.no_grad():
            hits = [int(net.logits(d.x[i:i + 1], as_domain).argmax()) == int(d.y[i]) for i in range(len(d))]
        return 100.0 * sum(hits) / len(hits)
    for d in tests:
        assert rc["acc"][f"source:{d.name}"] == pytest.approx(hand(d, d.name))
    pick = rc["info"]["init_source"]
    assert rc["acc"]["comp_source_only"] == pytest.approx(hand(tte, pick))
    by_hand = {name: hand(ttr, name) for name in ("a", "b")}                     # App. D.2: best on labelled target
    assert rc["info"]["target_train_acc_by_source"] == pytest.approx(by_hand)
    assert pick == max(sorted(by_hand), key=lambda n: by_hand[n])


def test_a_killed_seed_continues_and_ends_with_the_same_rows(tmp_path, monkeypatch):
    """A unit stopped inside its third engine run continues from the checkpoints of its workdir."""
    import tessera.adapt.training as training

    data, cfg = _data(), _cfg()
    build = (lambda kind, seed: tiny_comp(seed=seed) if kind == "comp" else tiny_iso(seed=seed))
    ran: list[int] = []
    orig = training.Trainer.train_step
    monkeypatch.setattr(training.Trainer, "train_step", lambda self, step: (ran.append(step), orig(self, step))[1])
    straight = run_seed(Units(RunOptions(out=tmp_path / "a"), "x", {}, log=lambda m: None), 0, data, cfg, build)
    n_straight = len(ran)

    real = training.adapt_m3sda

    def dies(*a, **kw):
        raise RuntimeError("simulated kill")
    monkeypatch.setattr("tessera.experiments.da_protocol.adapt_m3sda", dies)
    units = Units(RunOptions(out=tmp_path / "b"), "x", {}, log=lambda m: None)
    with pytest.raises(RuntimeError, match="simulated kill"):
        run_seed(units, 0, data, cfg, build)             # dies after the source training and ADDA
    work = units.workdir(("comp", "seed0"))
    assert (work / "pretrain" / "ckpt").is_dir() and (work / "adda" / "ckpt").is_dir()
    monkeypatch.setattr("tessera.experiments.da_protocol.adapt_m3sda", real)
    ran.clear()
    again = run_seed(units, 0, data, cfg, build)
    assert len(ran) == n_straight - cfg.pretrain_steps - cfg.adapt_steps   # neither was run again
    for r in (straight, again):
        for kind in ("comp", "iso"):
            r[kind].pop("seconds")
        r.pop("seconds")
    assert again == straight
    assert not work.exists()                              # the workdir goes once the unit's result is stored


def test_learning_rates_are_chosen_on_the_validation_split_never_on_test(monkeypatch):
    """Stub runs whose validation and test accuracies disagree: the row must report the test accuracy
    of the rate that is best on VALIDATION (and the smaller rate on a tie)."""
    import tessera.experiments.da_protocol as proto

    now: dict[str, float] = {}

    def fake_run(model, *a, lr, **kw):
        now["lr"] = lr
        return []
    for name in ("adapt_adda", "adapt_m3sda", "finetune_target"):
        monkeypatch.setattr(proto, name, fake_run)
    sources, tests, ttr, tte = _data()
    val_acc = {1e-3: 50.0, 0.1: 70.0, 0.3: 70.0}
    test_acc = {1e-3: 90.0, 0.1: 10.0, 0.3: 20.0}
    real_accuracy = proto.accuracy

    def fake_accuracy(model, domain, as_domain=None, batch_size=512):
        if "lr" not in now or domain is tests[0] or domain is tests[1]:
            return real_accuracy(model, domain, as_domain)
        return val_acc[now["lr"]] if len(domain) == 10 else test_acc[now["lr"]]
    monkeypatch.setattr(proto, "accuracy", fake_accuracy)
    cfg = AdaptConfig(pretrain_steps=2, batch_size=16, adapt_batch=16, pool=16, learned_steps=1, val_size=10,
                      lr_grid=(1e-3, 0.1, 0.3), ft_lr_grid=(0.3, 0.1, 1e-3), stats_diagnostic=False, other_bn_rows=False)
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, cfg, log=lambda m: None, table9=False)
    for key in ("adda", "m3sda", "supervised"):
        assert rc["info"]["selection"][key]["chosen_lr"] == 0.1        # val 70 (tie with 0.3: the smaller)
        assert rc["acc"][f"comp_{key}"] == 10.0                          # its TEST accuracy, not the best test
    assert rc["info"]["n_val"] == 10 and rc["info"]["n_adapt"] == len(ttr) - 10


def test_supervised_rows_record_a_validation_curve():
    sources, tests, ttr, tte = _data()
    cfg = AdaptConfig(pretrain_steps=2, batch_size=16, adapt_steps=1, adapt_batch=16, pool=16, ft_steps=4,
                      ft_eval_every=2, val_size=12, ft_lr_grid=(1e-3, 0.1), stats_diagnostic=False, other_bn_rows=False)
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, cfg, log=lambda m: None, table9=False)
    for r in rc["info"]["selection"]["supervised"]["tried"].values():
        assert [s for s, _ in r["val_curve"]] == [2, 4] and r["val_curve"][-1][1] == pytest.approx(r["val"])


def test_bn_mode_is_chosen_with_the_rate_on_validation_and_each_mode_is_reported(monkeypatch, tmp_path):
    """With ``bn_grid`` every (rate, BN mode) pair runs; the row keeps the pair best on VALIDATION, and
    each mode's own validation-chosen TEST accuracy is a row of its own."""
    import tessera.experiments.da_protocol as proto

    now: dict[str, object] = {}
    runs: list[tuple[str, float, str]] = []

    def fake_run(model, *a, lr, target_bn, **kw):
        now.update(lr=lr, bn=target_bn)
        runs.append((kw["out_dir"], lr, target_bn))
        return []
    for name in ("adapt_adda", "adapt_m3sda", "finetune_target"):
        monkeypatch.setattr(proto, name, fake_run)
    sources, tests, ttr, tte = _data()
    #            (lr, bn): (val, test)   train mode wins on validation at 0.1; eval's best is 1e-3
    table = {(1e-3, "eval"): (60.0, 91.0), (0.1, "eval"): (50.0, 99.0),
             (1e-3, "train"): (55.0, 98.0), (0.1, "train"): (70.0, 80.0)}
    real_accuracy = proto.accuracy

    def fake_accuracy(model, domain, as_domain=None, batch_size=512):
        if "lr" not in now or domain is tests[0] or domain is tests[1]:
            return real_accuracy(model, domain, as_domain)
        val, test = table[(now["lr"], now["bn"])]
        return val if len(domain) == 10 else test
    monkeypatch.setattr(proto, "accuracy", fake_accuracy)
    cfg = AdaptConfig(pretrain_steps=2, batch_size=16, adapt_batch=16, pool=16, learned_steps=1, val_size=10,
                      lr_grid=(1e-3, 0.1), ft_lr_grid=(1e-3, 0.1), bn_grid=("eval", "train"),
                      stats_diagnostic=False, other_bn_rows=True)
    rc = run_compositional(tiny_comp(), sources, ttr, tte, tests, cfg, log=lambda m: None, table9=False,
                           work=tmp_path)
    for key in ("adda", "m3sda", "supervised"):
        sel = rc["info"]["selection"][key]
        assert (sel["chosen_lr"], sel["chosen_bn"]) == (0.1, "train")
        assert set(sel["tried"]) == {"0.001/eval", "0.1/eval", "0.001/train", "0.1/train"}
        assert rc["acc"][f"comp_{key}"] == 80.0                            # the TEST accuracy of the chosen pair
        assert rc["acc"][f"comp_{key}_bn_eval"] == 91.0                    # eval's own choice: 1e-3 (val 60)
        assert rc["acc"][f"comp_{key}_bn_train"] == 80.0
    assert len(runs) == 12                          # 3 rows x 2 rates x 2 modes; other_bn_rows adds nothing
    assert len({r[0] for r in runs}) == 12                                 # each run its own checkpoint folder
