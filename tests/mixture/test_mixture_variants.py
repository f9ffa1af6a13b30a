"""mixture-variants (Table 8 and Table 10 analogs) at tiny budgets; the dataset reader is replaced by
scikit-learn's 8x8 digits (conftest.py)."""
import pytest
import torch

import tessera.data
from tessera.experiments import EXPERIMENTS, RunOptions
from tessera.experiments import mixture_variants as mv
from tessera.experiments.mixture_data import five_datasets

from mixture_helpers import Killed, rows_without_timing

TINY = dict(size=12, depth=2, steps=10, batch=8, n_train=40, n_eval=30, t_train=30, t_eval=20, ft_steps=3,
            n_val=10, ckpt=5, score_train=20)


@pytest.fixture
def tiny(tiny_data, monkeypatch):
    monkeypatch.setitem(mv.BUDGETS, "quick", dict(TINY))


def _opts(tmp_path, seeds, sub="out"):
    return RunOptions(json=tmp_path / f"{sub}.json", out=tmp_path / sub, seeds=seeds, budget="quick")


def test_registered():
    assert "mixture-variants" in EXPERIMENTS.names()


def test_paper_numbers_are_table8_and_table10():
    # means of the paper's rows, by hand from Table 8 / Table 10
    assert sum(mv.PAPER_TABLE8["simple baseline"][0]) / 5 == pytest.approx(63.68)
    assert sum(mv.PAPER_TABLE8["MW with patches, diag, K=2L"][0]) / 5 == pytest.approx(64.2)
    assert mv.PAPER_TABLE8["MW K=2L"][1] == 4.29
    assert sum(mv.PAPER_TABLE10["MW with patches K=L"]) / 5 == pytest.approx(72.34)
    assert set(mv.PAPER_TABLE8) <= {r.label for r in mv.ROWS} and "MW K=L" not in mv.PAPER_TABLE8


def test_five_datasets_use_disjoint_images(monkeypatch):
    ids = torch.arange(1000)                                    # labels = image ids, to track every image
    x = (ids.float() / 1000).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).contiguous()
    monkeypatch.setattr(tessera.data, "load_images", lambda name, split, root=None: (x, ids))
    tasks, targets = five_datasets(None, n_train=100, n_eval=50, t_train=60, t_eval=40, size=12)
    assert list(tasks) == ["mnist", "fashion_mnist", "kmnist", "usps", "cmnist"]
    assert list(targets) == ["uci_digits", "fashion_mnist-boundary", "mnist-rotate"]
    # the same split of one dataset is never used twice: MNIST / C-MNIST / rotated MNIST, F-MNIST / boundary
    for group in (("mnist", "cmnist", "mnist-rotate"), ("fashion_mnist", "fashion_mnist-boundary")):
        for part in (1, 3):                                     # train labels, eval labels
            seen = [set((tasks.get(g) or targets.get(g))[part].tolist()) for g in group]
            assert sum(len(s) for s in seen) == len(set().union(*seen))
    k = tasks["kmnist"]                                         # one split, cut in two
    assert not set(k[1].tolist()) & set(k[3].tolist()) and len(k[1]) == 100 and len(k[3]) == 50
    assert tuple(tasks["usps"][0].shape[1:]) == (1, 12, 12) and len(targets["uci_digits"][3]) == 40
    assert float(tasks["usps"][0][0, 0, 0, 0]) == 0.0          # MNIST format: a blank border around the box


def test_variants_rows(tiny, tmp_path):
    models = (mv.ROWS[0], mv.ROWS[1], mv.ROWS[2], mv.ROWS[5])    # simple / patches baselines, MW K=L, MW patches K=2L
    d = mv.run(_opts(tmp_path, 2), rows=models, alphas=(0.0, 1.0))
    rows = {(r["setting"], r["method"]): r for r in d["rows"]}
    labels = [m.label for m in models]
    for lab in labels:
        assert rows[("mean over 5 datasets", lab)]["n"] == 2
        assert rows[("L_CE: training cross-entropy summed over 5 datasets", lab)]["lower_is_better"]
        assert len(rows[("usps", lab)]["values"]) == 2
    assert rows[("mean over 5 datasets", "simple baseline")]["paper"] == pytest.approx(63.68)
    assert rows[("mean over 5 datasets", "MW K=L")]["paper"] is None          # no such row in Table 8
    for lab in labels[1:]:
        paired = rows[("mean over 5 datasets", f"{lab} - simple baseline (paired by seed)")]
        m, b = rows[("mean over 5 datasets", lab)], rows[("mean over 5 datasets", "simple baseline")]
        assert paired["mean"] == pytest.approx(m["mean"] - b["mean"], abs=1e-9)
    # Table 10: only the with-patches models transfer; MW also tunes its L x K mixture logits
    with_patches = [m for m in models if m.variant.endswith("patches")]
    for m in with_patches:
        r = rows[("transfer, mean over 3 held-out datasets", m.label)]
        assert r["n"] == 2
    assert ("transfer, mean over 3 held-out datasets", "MW K=L") not in rows
    base = rows[("transfer to mnist-rotate", "baseline with patches")]
    mw = rows[("transfer to mnist-rotate", "MW with patches K=2L")]
    assert mw["trained_params"] - base["trained_params"] == 2 * 4
    assert all(s in ("mnist", "fashion_mnist", "kmnist", "usps", "cmnist") for s in base["sources"])
    assert rows[("transfer, mean over 3 held-out datasets", "MW with patches K=2L")]["paper"] == pytest.approx(71.98)
    # the clustering strength is swept per init (here only random) on its row with the most templates
    assert set(d["config"]["clustering_alpha"]) == {"random"}
    assert {s for s, _ in rows if s.startswith("alpha sweep")} == {
        "alpha sweep: MW with patches K=2L (seed 0, 10 steps; validation = held-out part of the training data)"}


def test_variants_killed_run_continues_with_same_rows(tiny, step_counter, tmp_path):
    rows = (mv.ROWS[1], mv.ROWS[7])                 # baseline with patches, MW with patches diag K=2L
    straight = mv.run(_opts(tmp_path, 1, "a"), rows=rows, alpha=1.0)
    assert step_counter["n"] == 2 * (10 + 3 * 3)    # pretraining + 3 transfers, no sweep (alpha given)
    step_counter.update(n=0, kill_at=19 + 7)        # dies in the MW pretraining, after its step-5 checkpoint
    with pytest.raises(Killed):
        mv.run(_opts(tmp_path, 1, "b"), rows=rows, alpha=1.0)
    step_counter.update(n=0, kill_at=None)
    resumed = mv.run(_opts(tmp_path, 1, "b"), rows=rows, alpha=1.0)
    assert step_counter["n"] == (10 - 5) + 3 * 3    # the rest of the pretraining and the transfers
    assert rows_without_timing(resumed) == rows_without_timing(straight)
