"""mixture-multitask / mixture-transfer honour ``--seeds`` and resume per seed (tiny budgets, no data files:
the dataset reader is replaced by scikit-learn's 8x8 digits)."""
import pytest
import torch
from sklearn.datasets import load_digits

import tessera.data
from tessera.experiments import RunOptions
from tessera.experiments import mixture_multitask as mm
from tessera.experiments import mixture_transfer as mt


@pytest.fixture
def tiny(monkeypatch):
    d = load_digits()
    x = torch.tensor(d.images[:400], dtype=torch.float32).unsqueeze(1) / 16.0   # (400, 1, 8, 8)
    y = torch.tensor(d.target[:400], dtype=torch.long)
    monkeypatch.setattr(tessera.data, "load_images", lambda name, split, root=None: (x, y))
    small = dict(depth=2, templates=3, batch=16, n_train=120, n_eval=60, recalibrate=0)
    monkeypatch.setitem(mm.BUDGETS, "quick", dict(small, steps=9))
    monkeypatch.setitem(mt.BUDGETS, "quick", dict(small, steps=8, ft_steps=3, learn_steps=2, sources_to_try=8))


def _opts(tmp_path, seeds):
    return RunOptions(json=tmp_path / "r.json", out=tmp_path / "out", seeds=seeds, budget="quick")


def test_multitask_seeds_and_paired_row(tiny, tmp_path):
    d = mm.run(_opts(tmp_path, 2))
    rows = {(r["setting"], r["method"]): r for r in d["rows"]}
    assert rows[("mean over 9 tasks", "mixture")]["n"] == 2
    assert len(rows[("mnist-blur", "baseline")]["values"]) == 2
    paired = rows[("mean over 9 tasks", "mixture - baseline (paired by seed)")]
    m, b = rows[("mean over 9 tasks", "mixture")], rows[("mean over 9 tasks", "baseline")]
    assert paired["mean"] == pytest.approx(m["mean"] - b["mean"], abs=1e-9)
    one = mm.run(_opts(tmp_path, 1))    # seed 0 is reused from disk: same values, one seed
    assert {(r["setting"], r["method"]): r["values"] for r in one["rows"]}[("mnist-blur", "mixture")] == \
        rows[("mnist-blur", "mixture")]["values"][:1]


def test_transfer_seeds(tiny, tmp_path):
    d = mt.run(_opts(tmp_path, 2))
    rows = {r["method"]: r for r in d["rows"]}
    assert rows["baseline (logits+BN)"]["n"] == 2 and rows["MW random init"]["n"] == 2
    assert sum(m.startswith("MW init ") and "no MW tuning" not in m for m in rows) == 8   # every source tried
    assert all(r["trained_params"] > 0 for r in rows.values())
    assert len(d["config"]["pretrain_accuracy"]["mixture_patches"]) == 2
