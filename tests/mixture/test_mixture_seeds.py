"""mixture-multitask / mixture-transfer honour ``--seeds``, sweep the clustering strength on data held out
from training, and resume a killed run (tiny budgets, no data files: the dataset reader is replaced by
scikit-learn's 8x8 digits, see conftest.py)."""
import pytest

from tessera.experiments import RunOptions
from tessera.experiments import mixture_multitask as mm
from tessera.experiments import mixture_transfer as mt

from mixture_helpers import Killed, rows_without_timing

SMALL = dict(size=12, depth=2, batch=16, n_train=120, n_eval=60, recalibrate=0, n_val=30, ckpt=3, score_train=40)


@pytest.fixture
def tiny(tiny_data, monkeypatch):
    monkeypatch.setitem(mm.BUDGETS, "quick", dict(SMALL, steps=9))
    monkeypatch.setitem(mt.BUDGETS, "quick", dict(SMALL, steps=8, ft_steps=3, learn_steps=2, sources_to_try=8))


def _opts(tmp_path, seeds, sub="out"):
    return RunOptions(json=tmp_path / f"{sub}.json", out=tmp_path / sub, seeds=seeds, budget="quick")


def test_multitask_seeds_sweep_and_paired_rows(tiny, tmp_path):
    d = mm.run(_opts(tmp_path, 2), alphas=(0.0, 10.0))
    rows = {(r["setting"], r["method"]): r for r in d["rows"]}
    labels = [m.label for m in mm.ROWS]
    assert rows[("mean over 9 tasks", "MW diag K=2L")]["n"] == 2
    assert len(rows[("mnist-blur", "baseline")]["values"]) == 2
    for lab in labels[1:]:
        paired = rows[("mean over 9 tasks", f"{lab} - baseline (paired by seed)")]
        m, b = rows[("mean over 9 tasks", lab)], rows[("mean over 9 tasks", "baseline")]
        assert paired["mean"] == pytest.approx(m["mean"] - b["mean"], abs=1e-9)
    # one sweep per init, on its row with the most templates; one alpha chosen, the best held-out accuracy
    for init, lab in (("random", "MW random K=L"), ("diag", "MW diag K=2L")):
        sweep = [r for (s, _), r in rows.items() if s.startswith(f"alpha sweep: {lab} ")]
        assert len(sweep) == 2
        chosen = [r for r in sweep if r["method"].endswith("(chosen)")]
        assert len(chosen) == 1 and chosen[0]["mean"] == max(r["mean"] for r in sweep)
        assert d["config"]["clustering_alpha"][init] == float(chosen[0]["method"].split("=")[1].split()[0])
        off, on = sorted(sweep, key=lambda r: r["method"])            # alpha=0, alpha=10
        assert off["reg_over_ce"] == 0 and on["reg_over_ce"] > 0
        assert on["metric"] == "validation accuracy" and on["n"] == 1
    # self-organization rows: fractions in [0, 1] per seed, and the heatmap of every mixture row
    share = rows[("template sharing, same-augmentation pairs, early layers (first half)", "MW random K=L")]
    assert share["n"] == 2 and all(0.0 <= v <= 1.0 for v in share["values"])
    assert set(d["config"]["self_organization"]) == set(labels[1:])
    # diag init starts every layer on template l with weight 0.9
    assert rows[("mean largest mixture weight (init -> end)", "MW diag K=2L")]["init"] == pytest.approx(0.9, abs=1e-4)
    one = mm.run(_opts(tmp_path, 1), alphas=(0.0, 10.0))    # seed 0 reused from disk: same values, one seed
    assert {(r["setting"], r["method"]): r["values"] for r in one["rows"]}[("mnist-blur", "MW random K=L")] == \
        rows[("mnist-blur", "MW random K=L")]["values"][:1]


def test_multitask_killed_run_continues_with_same_rows(tiny, step_counter, tmp_path):
    rows = (mm.ROWS[0], mm.ROWS[2])                   # baseline, MW diag K=2L
    straight = mm.run(_opts(tmp_path, 1, "a"), rows=rows, alphas=(0.0, 1.0))
    assert step_counter["n"] == 3 * 9                 # sweep: alpha 0 and 1 (the chosen one is seed 0), baseline
    step_counter.update(n=0, kill_at=9 + 5)           # dies in the second sweep run, after its step-3 checkpoint
    with pytest.raises(Killed):
        mm.run(_opts(tmp_path, 1, "b"), rows=rows, alphas=(0.0, 1.0))
    step_counter.update(n=0, kill_at=None)
    resumed = mm.run(_opts(tmp_path, 1, "b"), rows=rows, alphas=(0.0, 1.0))
    assert step_counter["n"] == (9 - 3) + 9           # the rest of that run, then the baseline
    assert rows_without_timing(resumed) == rows_without_timing(straight)


def test_transfer_seeds_and_pretraining_rows(tiny, tmp_path):
    d = mt.run(_opts(tmp_path, 2), pretrain=(*mt.PRETRAIN, mt.RANDOM_K_L), alphas=(0.0, 1.0))
    rows = {(r["pretrained"], r["method"]): r for r in d["rows"] if "pretrained" in r}
    assert rows[("baseline with patches", "baseline (logits+BN)")]["n"] == 2
    full, short = mt.PRETRAIN[0].label, mt.RANDOM_K_L.label
    assert rows[(full, "MW random init")]["n"] == 2
    assert sum(p == full and m.startswith("MW init ") and "no MW tuning" not in m for p, m in rows) == 8
    # the second pretraining only transfers from the same-label source, tuned and frozen
    assert {m for p, m in rows if p == short} == {"MW init kmnist-original",
                                                  "MW init kmnist-original (no MW tuning)"}
    assert all(r["trained_params"] > 0 for r in rows.values())
    tuned, frozen = rows[(full, "MW init kmnist-original")], rows[(full, "MW init kmnist-original (no MW tuning)")]
    assert tuned["trained_params"] - frozen["trained_params"] == 2 * 2 * 2   # the L x K = 2 x 4 mixture logits
    assert len(d["config"]["pretrain_accuracy"][full]) == 2
    assert set(d["config"]["clustering_alpha"]) == {"diag", "random"}     # one strength per mixture init


def test_transfer_killed_run_continues_with_same_rows(tiny, step_counter, tmp_path):
    kw = dict(alphas=(0.0,))
    straight = mt.run(_opts(tmp_path, 1, "a"), **kw)
    total = step_counter["n"]
    step_counter.update(n=0, kill_at=total - 3)        # dies as the last transfer (3 steps) starts
    with pytest.raises(Killed):
        mt.run(_opts(tmp_path, 1, "b"), **kw)
    step_counter.update(n=0, kill_at=None)
    resumed = mt.run(_opts(tmp_path, 1, "b"), **kw)
    assert step_counter["n"] == 3                       # pretraining and the finished transfers are not rerun
    assert rows_without_timing(resumed) == rows_without_timing(straight)
