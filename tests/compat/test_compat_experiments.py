"""Quick-budget smoke runs on the offline scikit-learn digits (no data files needed), and the demo."""
import json

import pytest

from tessera.experiments import EXPERIMENTS, RunOptions
from tessera.experiments import compat_recombination as cr

from compat_helpers import Killed, count_steps


def test_registered():
    for name in ("compat-recombination", "compat-uda", "compat-heads", "compat-transfer"):
        assert name in EXPERIMENTS


def test_recombination_quick_smoke_and_resume(tmp_path, monkeypatch):
    monkeypatch.setitem(cr.BUDGETS, "quick", cr.Budget(steps=8, width=2, n_train=300, n_test=150,
                                                       methods1=("independent", "IIW+RP+DCC", "upper_bound"),
                                                       methods2=("RP",), bn_methods=("IIW+RP+DCC",),
                                                       norm_variants=("LayerNorm",)))
    opts = RunOptions(json=tmp_path / "r.json", out=tmp_path / "out", seeds=2, budget="quick")
    d = cr.run(opts, pairs=("digits_domains", "digits_split"))
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "compat-recombination"
    rows = {(r["setting"], r["method"], r["metric"]): r for r in d["rows"]}
    main = rows[("digits_domains", "IIW+RP+DCC", "recombination_accuracy")]
    assert main["n"] == 2 and 0 <= main["mean"] <= 100 and main["trained_params"] > 0
    assert ("digits_domains (BN train statistics)", "IIW+RP+DCC", "recombination_accuracy") in rows
    assert ("digits_domains (norm variants)", "IIW+DCC LayerNorm", "recombination_accuracy") in rows
    assert ("digits_split", "RP", "recombination_accuracy") in rows
    assert ("digits_domains (incremental)", "IIW+RP+DCC (incremental)", "recombination_accuracy") in rows
    assert ("digits_domains", "upper bound", "recombination_accuracy") in rows
    assert "ordering_holds" in d["config"]["checks"]
    assert list((tmp_path / "out" / "compat-recombination").glob("*.png"))
    d2 = cr.run(opts, pairs=("digits_domains", "digits_split"))  # resumes from the per-seed files
    assert [r["values"] for r in d2["rows"]] == [r["values"] for r in d["rows"]]


def test_demo_rows(tmp_path):
    from tessera.compat.demo import demo

    rows = demo(tmp_path, steps=3)
    assert [r["method"] for r in rows][:2] == ["independent", "IIW+RP+DCC"]
    assert rows[-1]["same_as_before_saving"] is True
    assert (tmp_path / "extractor_a" / "manifest.json").is_file() and (tmp_path / "recombination_matrix.png").is_file()


def test_recombination_killed_mid_unit_resumes_to_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setitem(cr.BUDGETS, "quick", cr.Budget(steps=6, width=2, n_train=200, n_test=100, methods1=("IIW",),
                                                       methods2=(), bn_methods=(), norm_variants=(),
                                                       incremental=("IIW+RP+DCC",), checkpoint_every=2))
    pairs = ("digits_domains", "digits_split")
    straight = cr.run(RunOptions(out=tmp_path / "a", seeds=1, budget="quick"), pairs=pairs)
    opts = RunOptions(out=tmp_path / "b", seeds=1, budget="quick")
    # IIW: 12 joint steps; incremental: 6 (member 0) + 3 of member 1's 6, killed before its step-4 checkpoint
    count_steps(monkeypatch, kill_at=21)
    with pytest.raises(Killed):
        cr.run(opts, pairs=pairs)
    calls = count_steps(monkeypatch)
    resumed = cr.run(opts, pairs=pairs)               # the same command again
    assert calls["n"] == 4                            # IIW and member 0 reused; member 1 from its step-2 checkpoint
    assert [r["values"] for r in resumed["rows"]] == [r["values"] for r in straight["rows"]]
