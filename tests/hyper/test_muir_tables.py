"""Tables 4-7 of paper 003 on tiny synthetic stand-ins: the commands share units, each row is what its
method trained, the claims follow the stated rule, the accounting of Table 5 is exact."""
import pytest
import torch
from scipy.stats import mannwhitneyu

import tessera.experiments.muir_compress as mcp
import tessera.experiments.muir_crossmodal as mc
import tessera.experiments.muir_tables as mt
from tessera.experiments import RunOptions
from tessera.experiments.muir_tasks import synthetic_tasks
from tessera.hyper import parameter_count

TINY = dict(images=256, vocab=40, tokens=1500, sequences=256, length=40, hidden=16, channels=16)
BUDGET = mc.Budget(steps=6, n_init=2, n_iter=2, eval_tokens=None, eval_images=None)


def test_doctest():
    import doctest
    assert doctest.testmod(mcp).attempted > 0 and doctest.testmod(mcp).failed == 0


def test_verdict_rule():
    assert mt.verdict([1.0, 1.1, 0.9], [2.0, 2.0, 2.0], lower_is_better=True)["verdict"] == "holds"
    assert mt.verdict([1.0, 1.1, 0.9], [2.0, 2.0, 2.0], lower_is_better=False)["verdict"] == "does not hold"
    v = mt.verdict([1.0, 3.0, 2.0], [2.0, 2.0, 2.1], lower_is_better=True)      # diffs 1, -1, 0.1
    assert v["verdict"] == "within noise" and v["diffs"] == pytest.approx([1.0, -1.0, 0.1])
    assert mt.verdict([1.0], [2.0], lower_is_better=True)["verdict"] == "untested (one seed)"   # no std error
    assert v["diff_mean"] == pytest.approx(0.1 / 3) and v["diff_stderr"] == pytest.approx((1.0033 / 3) ** 0.5, rel=1e-3)


def _counting(monkeypatch):
    calls = []
    real = mc.train_unit

    def counted(tasks, spec, cfg, **kw):
        calls.append((spec.method, spec.context, spec.alignment, "+".join(t.short for t in tasks)))
        return real(tasks, spec, cfg, **kw)
    monkeypatch.setattr(mc, "train_unit", counted)
    return calls


def test_context_then_methods_then_generic_share_units(tmp_path, monkeypatch):
    tasks = synthetic_tasks(0, **TINY)
    calls = _counting(monkeypatch)
    opts = lambda n: RunOptions(json=tmp_path / f"{n}.json", out=tmp_path / n, budget="quick", seeds=2)  # noqa: E731
    ctx = mt.run_context(opts("ctx"), tasks=tasks, budget=BUDGET)
    assert sorted(calls) == sorted([("muir", c, "disjoint", "L+S+D") for c in (0, 1, 2, 4, 8)] * 2)
    rows = {(r["setting"][0], r["method"]): r for r in ctx["rows"]}
    assert len(rows) == 15 and all(r["n"] == 2 for r in rows.values())
    assert rows[("S", "c=0")]["paper"] == 144.52 and rows[("D", "c=8")]["paper"] == 0.1468
    for claim in ctx["config"]["claims"]:
        a, b = (rows[(claim["task"], k)]["values"] for k in (claim["a"], claim["b"]))
        sign = -1 if rows[(claim["task"], claim["a"])]["lower_is_better"] else 1
        assert claim["diffs"] == pytest.approx([sign * (x - y) for x, y in zip(a, b)])
    calls.clear()
    meth = mt.run_methods(opts("meth"), tasks=tasks, budget=BUDGET)             # MUiR c = 4 reused
    assert sorted(calls) == sorted([("plain", 4, "disjoint", s) for s in "LSD"] * 2
                                   + [("classical", 0, "disjoint", "L+S+D"), ("adapters", 0, "disjoint", "L+S+D"),
                                      ("muir", 4, "hierarchical", "L+S+D")] * 2)
    mrows = {(r["setting"][0], r["method"]): r for r in meth["rows"]}
    assert mrows[("L", "muir")]["values"] == rows[("L", "c=4")]["values"]
    assert mrows[("S", "classical")]["paper"] == 145.88
    store = tmp_path / "muir-units" / "quick" / "seed0"
    import json
    classical = json.loads((store / "classical" / "L+S+D.json").read_text())["result"]
    hier = json.loads((store / "muir-hierarchical" / "L+S+D.json").read_text())["result"]
    per_model = torch.bincount(torch.tensor(classical["layout"])[:, 0]).tolist()
    hier_psi = torch.cat([torch.arange(n) for n in per_model]).tolist()
    assert classical["psi0"] == hier_psi and classical["stats"]["params"] == 201 * 256      # fixed, c = 0
    assert hier["history"][0]["active"] == 201 and hier["history"][0]["generation"] == 0   # starts hierarchical
    calls.clear()
    gen = mt.run_generic(opts("gen"), tasks=tasks, budget=BUDGET)              # nothing is trained
    assert calls == [] and len(gen["rows"]) == 24
    # the pooled p-value of one cell, by hand with scipy
    runs = [json.loads((tmp_path / "muir-units" / "quick" / f"seed{s}" / "muir-across" / "L+S+D.json").read_text())
            ["result"] for s in (0, 1)]
    gmask, svals, gvals = [], [], []
    for r in runs:
        u = torch.bincount(torch.tensor(r["psi0"]), minlength=r["num_modules"])
        for k, row in enumerate(r["tensor_stats"]["modules"]):
            if u[k] > 4:
                gvals.append(row[0])
            elif u[k] > 0:
                svals.append(row[0])
        gmask.append(int((u > 4).sum()))
    cell = next(r for r in gen["rows"] if r["setting"].startswith("modules: used by more than c") and r["method"] == "std")
    assert cell["n_generic"] == len(gvals) == sum(gmask) and cell["n_specific"] == len(svals)
    if gvals and svals:
        assert cell["mean"] == pytest.approx(mannwhitneyu(gvals, svals, alternative="two-sided").pvalue)


def test_parameter_shares_partition_the_total():
    g = torch.Generator().manual_seed(0)
    psi0 = torch.randint(0, 30, (100,), generator=g)
    model = torch.arange(100) % 3
    for compact in (False, True):
        total = parameter_count(psi0, 100, 4, (16, 16), compact=compact)
        parts = [parameter_count(psi0, 100, 4, (16, 16), compact=compact, where=model == m) for m in range(3)]
        assert abs(sum(parts) - total) <= 2                                  # rounding of three shares


def test_compress_rows_and_accounting(tmp_path):
    tasks = synthetic_tasks(0, **{**TINY, "hidden": 32, "embed": 32})[:2]
    budget = mcp.Budget(steps=6, n_init=2, n_iter=2, eval_tokens=None, eval_images=None, hidden=32, embed=32)
    res = mcp.run(RunOptions(json=tmp_path / "c.json", out=tmp_path / "c", budget="quick", seeds=1), tasks=tasks,
                  budget=budget)
    rows = {r["method"]: r for r in res["rows"]}
    full = tasks[1].model()
    assert rows["stl-full"]["lstm_params"] == [sum(p.numel() for p in full.lstm.parameters())]
    h = res["config"]["shrunk_hidden"][0]
    shrunk = mcp._with_hidden(tasks[1], h).model()
    lstm = shrunk.rnns if hasattr(shrunk, "rnns") else shrunk.lstm
    assert rows["stl-shrunk"]["lstm_params"] == [sum(p.numel() for p in lstm.parameters())]
    p = rows["muir"]["lstm_params"][0]
    assert all(abs(mcp.lstm_params([32, h, 32]) - p) <= abs(mcp.lstm_params([32, k, 32]) - p) for k in range(1, 33))
    assert {r["paper"] for r in res["rows"]} == {69.94, 71.01, 73.64}
