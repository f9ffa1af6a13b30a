"""Quick-budget smoke runs on the offline scikit-learn digits (no data files needed), and the demo."""
import json


from tessera.experiments import EXPERIMENTS, RunOptions
from tessera.experiments import compat_recombination as cr


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
