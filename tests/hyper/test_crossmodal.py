"""Cross-architecture MUiR: the three task models share one bank and train; the experiment runs end to end
on tiny synthetic stand-ins (and resumes); the overhead bench emits its rows; helpers are exact."""
import doctest
import importlib
import json
import random

import pytest
import torch

import tessera.experiments.muir_crossmodal as mc
from tessera.experiments import RunOptions
from tessera.hyper import MuirConfig, reparameterize
from tessera.hyper.accounting import sharing_by_subset

TINY = dict(images=256, vocab=40, tokens=1500, sequences=128, length=40, hidden=16, channels=16)


@pytest.mark.parametrize("name", ["tessera.hyper.models", "tessera.experiments.muir_crossmodal"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_three_models_reparameterize_together_and_train():
    tasks = mc.synthetic_tasks(0, **TINY)
    torch.manual_seed(0)
    muir = reparameterize([t.model() for t in tasks], block=(16, 16), context=4, lam=1, p=1.0)
    assert muir.targets == [["conv2.weight", "fc1.weight", "fc2.weight"],
                            ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1"],
                            ["conv.weight", "fc.weight"]]
    # LeNet: conv2 25 kernel positions + fc1 256->128 (16 x 8) + fc2 128->96 (8 x 6); LSTM 16: 4 x 4 gates;
    # DeepBind-16: 24 kernel positions + fc 16->16
    per_model = torch.bincount(muir.location_table()[:, 0])
    assert per_model.tolist() == [25 + 128 + 48, 16, 24 + 1] and muir.num_modules == muir.num_locations
    opt = torch.optim.Adam(muir.param_groups(lr=1e-3), fused=True)
    losses = [t.trainer(muir[i], 0) for i, t in enumerate(tasks)]
    muir.begin_generation(opt)
    H0 = muir.bank.H.detach().clone()
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        loss = sum(f() for f in losses)
        loss.backward()
        assert torch.isfinite(loss) and muir.bank.H.grad.abs().sum() > 0
        assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in muir.scores())
        opt.step()
    psi0 = muir.end_generation()
    assert not torch.equal(H0, muir.bank.H)
    subsets = sharing_by_subset(psi0, muir.location_table()[:, 0], muir.num_modules)
    assert sum(subsets.values()) == muir.stats()["active"]
    assert all(0 <= t.evaluate(muir[i]) for i, t in enumerate(tasks))


def test_quick_path_on_synthetic_stand_ins_and_resume(tmp_path, monkeypatch):
    tasks = mc.synthetic_tasks(0, **TINY)
    budget = mc.Budget(steps=6, n_init=2, n_iter=2, eval_tokens=None, eval_images=None)
    opts = RunOptions(json=tmp_path / "r.json", out=tmp_path, budget="quick", seeds=1)
    res = mc.run(opts, tasks=tasks, budget=budget)
    rows = {(r["setting"][0], r["method"], r["metric"]): r for r in res["rows"]}
    for short, metric in (("L", "test_error_pct"), ("S", "test_perplexity"), ("D", "test_auc")):
        for row in mc.ROWS:
            r = rows[(short, row, metric)]
            assert r["n"] == 1 and r["paper"] == mc.PAPER[short][row] and r["mean"] == r["mean"]  # not NaN
        assert rows[(short, "baseline", metric)]["gain_vs_baseline"] == 0
        assert rows[(short, "muir-across", metric)]["paper_gain_vs_baseline"] > 0
    assert rows[("D", "muir-across", "test_auc")]["lower_is_better"] is False
    acc = next(r for r in res["rows"] if r["metric"] == "active_hypermodules" and r["setting"] == "L+S+D")
    assert acc["bank_params_end"] <= acc["bank_params_start"] and acc["locations"] == 201 + 16 + 25
    hist = res["config"]["sharing_history"]
    assert len(hist) == budget.generations + 1 and hist[0] == {"step": 0, "params": hist[0]["params"], "L": 201,
                                                               "S": 16, "D": 25}
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "muir-crossmodal"
    for png in ("fig3a_sharing_over_time.png", "fig3b_layer_sharing.png"):
        assert (tmp_path / "muir-crossmodal" / png).is_file()
    units = sorted(p.name for p in (tmp_path / "muir-crossmodal" / "quick" / "seed0").iterdir())
    assert units == sorted([f"{r}_{s}.json" for r in ("baseline", "muir-within") for s in "LSD"]
                           + ["muir-across_L+S+D.json"])

    def no_training(*a, **k):
        raise AssertionError("a finished unit was trained again")
    monkeypatch.setattr(mc, "_train_unit", no_training)
    again = mc.run(opts, tasks=tasks, budget=budget)                       # resumes: every unit reused
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in res["rows"]]


def test_bench_rows(tmp_path):
    from tessera.bench.muir import run
    res = run(RunOptions(json=tmp_path / "b.json", budget="quick"), _smoke=True)
    assert res["name"] == "muir-overhead" and len(res["rows"]) == 5
    assert [r["setting"].split(":")[0].split(" ")[0] for r in res["rows"]] == ["L", "S", "D", "total", "joint"]
    for r in res["rows"]:
        assert r["baseline_s"] > 0 and r["candidate_s"] > 0 and r["fixed_s"] > 0 and r["target_ratio"] == 1.3
        assert r["ratio"] == pytest.approx(r["candidate_s"] / r["baseline_s"])
    tot = res["rows"][3]
    assert tot["baseline_s"] == pytest.approx(sum(r["baseline_s"] for r in res["rows"][:3]))
    assert tot["candidate_s"] == pytest.approx(sum(r["candidate_s"] for r in res["rows"][:3]))


def test_dinucleotide_shuffle_keeps_counts_and_ends():
    rng = random.Random(0)
    for _ in range(300):
        s = "".join(rng.choice("ACGTN") for _ in range(rng.randint(1, 60)))
        t = mc.dinucleotide_shuffle(s, rng)
        assert sorted(zip(s, s[1:])) == sorted(zip(t, t[1:])) and t[:1] == s[:1] and t[-1:] == s[-1:]
    seen = {mc.dinucleotide_shuffle("ACAGATA", rng) for _ in range(300)}   # all 6 Eulerian paths occur
    assert len(seen) == 6


def test_auc_matches_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    s, y = torch.randint(0, 5, (200,), generator=g).float(), torch.randint(0, 2, (200,), generator=g).float()
    pos, neg = s[y == 1], s[y == 0]
    ref = ((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean()
    assert mc.auc(s, y) == pytest.approx(float(ref))


def test_layer_sharing_is_one_for_a_random_alignment():
    g = torch.Generator().manual_seed(0)
    layer = torch.arange(3000) % 3
    psi0 = torch.randint(0, 50, (3000,), generator=g)                      # no structure: ratio ~ 1
    r = mc.layer_sharing(psi0, layer, 50)
    assert torch.allclose(r, torch.ones(3, 3, dtype=r.dtype), atol=0.1)


def test_budgets_fit():
    for b in mc.BUDGETS.values():
        assert b.n_init + b.generations * b.n_iter == b.steps
        cfg = b.config(0)
        assert (cfg.block, cfg.context, cfg.lam) == ((16, 16), 4, 1) and cfg.n_final == 0
    assert isinstance(MuirConfig(), MuirConfig)
