"""Quick-budget smoke runs on the offline scikit-learn digits (no data files needed), the paper budget's
wiring (App. E's recipe reaches the engine), a killed experiment resuming, and the demo."""
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tessera.experiments import EXPERIMENTS, RunOptions
from tessera.experiments import compat_controls as cc
from tessera.experiments import compat_recombination as cr
from tessera.train import Trainer

from compat_helpers import Killed, count_steps

DIGITS = ("digits_domains", "digits_same")


def test_registered():
    for name in ("compat-recombination", "compat-controls", "compat-uda", "compat-heads", "compat-transfer"):
        assert name in EXPERIMENTS


def test_recombination_quick_smoke_and_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(cr.BUDGETS, "quick", cr.Budget(steps=4, net_kwargs={"width": 2}, n_train=200, n_test=100,
                                                       methods=("independent", "IIW", "IIW+RP+DCC", "upper_bound"),
                                                       same_methods=("RP",), bn_methods=("IIW+RP+DCC",),
                                                       incremental=("IIW+RP+DCC",)))
    opts = RunOptions(json=tmp_path / "r.json", out=tmp_path / "out", seeds=2, budget="quick")
    d = cr.run(opts, pairs=DIGITS)
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "compat-recombination"
    rows = {(r["setting"], r["method"], r["metric"]): r for r in d["rows"]}
    main = rows[("digits_domains", "IIW+RP+DCC", "recombination_accuracy")]
    assert main["n"] == 2 and main["paper"] == 76.7 and main["trained_params"] > 0
    assert ("digits_domains (BN train statistics)", "IIW+RP+DCC", "recombination_accuracy") in rows
    assert ("digits_same", "RP", "recombination_accuracy") in rows
    inc = "digits_domains (incremental)"
    first = [rows[(inc, f"IIW+RP+DCC (incremental, {n} first)", "recombination_accuracy")]["values"]
             for n in ("digits:original", "digits:boundary")]
    both = rows[(inc, "IIW+RP+DCC (incremental, both orders)", "recombination_accuracy")]
    assert both["paper"] == 72.7 and both["values"] == pytest.approx([(a + b) / 2 for a, b in zip(*first)])
    checks = d["config"]["checks"]
    assert len(checks["ordering"]) == 3 and checks["ordering"][0].startswith("independent ")  # indep < IIW < all <= ub
    assert list((tmp_path / "out" / "compat-recombination").glob("*.png"))
    d2 = cr.run(opts, pairs=DIGITS)  # resumes from the per-unit files
    assert [r["values"] for r in d2["rows"]] == [r["values"] for r in d["rows"]]


def test_recombination_killed_mid_unit_resumes_to_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setitem(cr.BUDGETS, "quick", cr.Budget(steps=6, net_kwargs={"width": 2}, n_train=200, n_test=100,
                                                       methods=("IIW",), same_methods=(), bn_methods=(),
                                                       incremental=("IIW+RP+DCC",), checkpoint_every=2))
    straight = cr.run(RunOptions(out=tmp_path / "a", seeds=1, budget="quick"), pairs=DIGITS)
    opts = RunOptions(out=tmp_path / "b", seeds=1, budget="quick")
    # IIW: 12 joint steps; incremental, first order: 6 (member 0) + 3 of member 1's 6 -> killed
    count_steps(monkeypatch, kill_at=21)
    with pytest.raises(Killed):
        cr.run(opts, pairs=DIGITS)
    calls = count_steps(monkeypatch)
    resumed = cr.run(opts, pairs=DIGITS)               # the same command again
    # IIW and member 0 reused, member 1 from its step-2 checkpoint (4 steps), then the other order (12)
    assert calls["n"] == 4 + 12
    assert [r["values"] for r in resumed["rows"]] == [r["values"] for r in straight["rows"]]


def test_paper_budget_runs_with_app_e_recipe(tmp_path, monkeypatch):
    paper = cr.BUDGETS["paper"]
    assert (paper.net, paper.net_kwargs, paper.size, paper.steps, paper.batch_size, paper.lr, paper.weight_decay,
            paper.schedule, paper.rotation, paper.seeds) == ("resnet56", {"blocks": 9}, 32, 20000, 512, 0.01, 1e-7,
                                                             "paper", "all", 10)
    # the same budget end to end with 2 steps, a 1-block ResNet-56 shape and batch 32 (what the engine gets)
    tiny = replace(paper, steps=2, batch_size=32, net_kwargs={"blocks": 1, "width": 4}, n_train=64, n_test=32,
                   methods=("IIW+RP+DCC",), same_methods=(), bn_methods=(), incremental=("IIW+RP+DCC",))
    monkeypatch.setitem(cr.BUDGETS, "paper", tiny)
    seen = []
    orig = Trainer.__init__

    def spy(self, model, tasks, config, *a, **kw):
        seen.append(config)
        orig(self, model, tasks, config, *a, **kw)

    monkeypatch.setattr(Trainer, "__init__", spy)
    d = cr.run(RunOptions(out=tmp_path, seeds=1, budget="paper"), pairs=DIGITS)
    assert d["rows"] and len(seen) == 1 + 2 * 2             # joint, then 2 orders x 2 members
    joint, inc = seen[0], seen[1]
    for c, k in ((joint, 2), (inc, 1)):                      # per network: lr / 10 every 5,000 of its steps
        assert (c.optim.name, c.optim.lr, c.optim.weight_decay) == ("adam", 0.01, 1e-7)
        assert (c.schedule.name, c.schedule.step_size, c.schedule.gamma, c.steps) == ("step", 5000 * k, 0.1, 2 * k)
        assert not c.ema.enabled


def test_controls_quick_smoke(tmp_path, monkeypatch):
    r = cr.Budget(steps=4, net_kwargs={"width": 2}, n_train=200, n_test=100)
    monkeypatch.setitem(cc.BUDGETS, "quick", replace(cc.BUDGETS["quick"], recipe=r, pretrain_data="digits_split",
                                                     num_common=(3,), rp_long=2))
    d = cc.run(RunOptions(out=tmp_path, budget="quick"), pairs=("digits_domains", "digits_split"))
    got = {(x["setting"], x["method"]) for x in d["rows"] if x["metric"] == "recombination_accuracy"}
    assert got == {("digits_domains (split position)", "RP, split after stage1"),
                   ("digits_domains (number of DCC classes)", "IIW+DCC, 3 common classes"),
                   ("digits_domains (RP variants)", "RP, all four rotations (Eq. 2)"),
                   ("digits_domains (RP variants)", "RP, 2x steps"),
                   ("digits_domains (norm variants)", "IIW+DCC LayerNorm"),
                   ("digits_domains (pretrained init)", "IIW from pretrained weights"),
                   ("digits_domains (pretrained init)", "RP from pretrained weights"),
                   ("digits_split (no common classes)", "RP")}
    pre = {x["method"]: x for x in d["rows"] if x["setting"].endswith("(pretrained init)")
           and x["metric"] == "recombination_accuracy"}
    assert pre["IIW from pretrained weights"]["paper"] == 74.3 and pre["RP from pretrained weights"]["paper"] == 19.7


def test_demo_rows(tmp_path):
    from tessera.compat.demo import demo

    rows = demo(tmp_path, steps=3)
    assert [r["method"] for r in rows][:2] == ["independent", "IIW+RP+DCC"]
    assert rows[-1]["same_as_before_saving"] is True
    assert (tmp_path / "extractor_a" / "manifest.json").is_file() and (tmp_path / "recombination_matrix.png").is_file()


@pytest.mark.shared_data
def test_heads_quick_every_reference(tmp_path, monkeypatch):
    from compat_helpers import shared_data_root
    from tessera.experiments import compat_heads as ch

    root = shared_data_root()
    if root is None:
        pytest.skip("shared data absent: set TESSERA_DATA")
    monkeypatch.setitem(ch.BUDGETS, "quick", replace(ch.BUDGETS["quick"], steps=2, head_steps=2, ub_steps=2, n_train=200,
                                                     n_test=100, references=("wide_resnet", "mobilenet"),
                                                     head_blocks=6, head_expansion=6))
    d = ch.run(RunOptions(out=tmp_path, seeds=1, budget="quick", data_root=root))
    rows = {(r["setting"], r["method"]): r for r in d["rows"]}
    ref = rows[("fashion_mnist 5->10 classes, reference wide_resnet", "resnet + updated shared head")]
    swapped = rows[("fashion_mnist 5->10 classes, reference mobilenet", "mobilenet (reference) + updated shared head")]
    assert ref["paper"] == 91.7 and swapped["paper"] is None and ref["trained_params"] == swapped["trained_params"]
    assert "6 inverted residual blocks of expansion 6" in d["config"]["head"]


def test_heads_upper_bound_pairs_each_alone_trained_extractor_with_its_own_head(tmp_path, monkeypatch):
    """The upper bound (each architecture trained alone on all 10 classes) is measured on the extractors
    trained with those heads, not on the joint phase's extractors (a bug that reported ~10-30%)."""
    from tessera.compat.measure import TestSet
    from tessera.experiments import compat_heads as ch

    alone, calls = {}, []
    real_train, real_matrix = ch.train_joint, ch.recombination_matrix

    def train_spy(members, *a, out_dir=None, **kw):
        if out_dir is not None and Path(out_dir).name.startswith("alone_"):
            alone[id(members[0].head)] = members[0].extractor
        return real_train(members, *a, out_dir=out_dir, **kw)

    def matrix_spy(exts, heads, *a, **kw):
        calls.append((list(exts), list(heads)))
        return real_matrix(exts, heads, *a, **kw)
    monkeypatch.setattr(ch, "train_joint", train_spy)
    monkeypatch.setattr(ch, "recombination_matrix", matrix_spy)
    b = replace(ch.BUDGETS["quick"], steps=2, head_steps=2, ub_steps=2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 1, b.size, b.size, generator=g), torch.arange(200) % 10   # > one batch of 64 per phase
    test = TestSet(x[:20], y[:20], [str(i) for i in range(10)])
    out = ch._unit(tmp_path, (x, y, test), b, 0, torch.device("cpu"))
    exts, heads = next(c for c in calls if all(id(h) in alone for h in c[1]))
    assert len(heads) == 3 and [alone[id(h)] for h in heads] == exts          # extractor i with its own head
    assert len(out["upper_bound"]) == 3
