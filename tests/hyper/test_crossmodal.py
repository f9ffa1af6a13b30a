"""Cross-architecture MUiR on the engine: the three task models share one bank and train; evaluation equals
hand computations; a unit killed mid-run resumes exactly; 2 gloo processes equal one; the experiment runs
end to end on tiny synthetic stand-ins (and resumes); the overhead bench emits its rows."""
import doctest
import importlib
import json
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

import tessera.experiments.muir_crossmodal as mc
import tessera.experiments.muir_units as mu
from tessera.experiments import RunOptions
from tessera.experiments.muir_tasks import synthetic_tasks
from tessera.hyper import MuirConfig, MuirSearch, reparameterize
from tessera.hyper.accounting import parameter_count, sharing_by_subset
from tessera.train import Trainer, TrainConfig
from tessera.train.bptt import batchify

TINY = dict(images=256, vocab=40, tokens=1500, sequences=256, length=40, hidden=16, channels=16)
BUDGET = mc.Budget(steps=6, n_init=2, n_iter=2, eval_tokens=None, eval_images=None)


@pytest.mark.parametrize("name", ["tessera.hyper.models", "tessera.experiments.muir_crossmodal",
                                  "tessera.hyper.analysis", "tessera.data.genomics"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def _engine(tasks, muir, steps=2):
    cfg = TrainConfig(steps=steps, batch_size=128, multitask="sum", progress="off", log_every=0, checkpoint_every=0,
                      optim={"name": "adam", "lr": 1e-3, "eps": 1e-8, "weight_decay": 0.0},
                      schedule={"name": "constant"}, ema={"enabled": False})
    return Trainer(muir, [t.task(i) for i, t in enumerate(tasks)], cfg, param_groups=muir.param_groups(lr=1e-3))


def test_three_models_share_one_bank_train_and_evaluate_as_by_hand():
    tasks = synthetic_tasks(0, **TINY)
    torch.manual_seed(0)
    muir = reparameterize([t.model() for t in tasks], block=(16, 16), context=4, lam=1, p=1.0)
    assert muir.targets == [["conv2.weight", "fc1.weight", "fc2.weight"],
                            ["lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.weight_ih_l1", "lstm.weight_hh_l1"],
                            ["conv.weight", "fc.weight"]]
    # LeNet: conv2 25 kernel positions + fc1 256->128 (16 x 8) + fc2 128->96 (8 x 6); LSTM 16: 4 x 4 gates;
    # DeepBind-16: 24 kernel positions + fc 16->16
    assert torch.bincount(muir.location_table()[:, 0]).tolist() == [25 + 128 + 48, 16, 24 + 1]
    tr = _engine(tasks, muir)
    muir.begin_generation(tr.optimizer)
    H0, s0 = muir.bank.H.detach().clone(), [s.detach().clone() for s in muir.scores()]
    logs = [tr.train_step(k) for k in range(2)]
    assert set(logs[0]) == {"L", "S", "D"} and all(torch.isfinite(torch.tensor(list(v.values()))).all() for v in logs)
    assert not torch.equal(H0, muir.bank.H)                                        # the shared bank and every
    assert all(not torch.equal(a, b) for a, b in zip(s0, muir.scores()))           # model's scores learn
    psi0 = muir.end_generation()
    subsets = sharing_by_subset(psi0, muir.location_table()[:, 0], muir.num_modules)
    assert sum(subsets.values()) == muir.stats()["active"]
    res = tr.evaluate()
    muir.eval()
    with torch.no_grad():
        L, S, D = tasks
        err = 100.0 * float((muir[0](L.xt).argmax(1) != L.yt).float().mean())
        data = batchify(S.test_tokens, S.eval_batch)
        ce = F.cross_entropy(muir[1](data[:-1])[0], data[1:].reshape(-1))          # one call == state carried
        sd = muir[2](D.xt)
        pos, neg = sd[D.yt == 1], sd[D.yt == 0]
        auc = float(((pos[:, None] > neg[None]).float() + 0.5 * (pos[:, None] == neg[None]).float()).mean())
    assert L.score(res["L"]) == pytest.approx(err)
    assert S.score(res["S"]) == pytest.approx(float(ce.exp()), rel=1e-4)
    assert D.score(res["D"]) == pytest.approx(auc)


class _KillAt(MuirSearch):
    """MuirSearch that raises after step ``kill`` (a simulated kill) and records the steps it saw."""
    kill, seen = None, []

    def on_step_end(self, trainer, step, logs):
        _KillAt.seen.append(step)
        super().on_step_end(trainer, step, logs)
        if step == _KillAt.kill:
            raise KeyboardInterrupt


def _unit(tasks, work, **kw):
    cfg = MuirConfig(block=(16, 16), context=4, lam=1, n_init=2, n_iter=2, n_generations=3, n_final=0, seed=0)
    return mu.train_unit(tasks, mu.Spec(), cfg, steps=8, seed=0, workdir=work, log=lambda m: None, **kw)


def test_unit_killed_mid_run_resumes_exactly(tmp_path, monkeypatch):
    tasks = synthetic_tasks(0, **TINY)
    ref = _unit(tasks, tmp_path / "straight")
    monkeypatch.setattr(mu, "MuirSearch", _KillAt)
    _KillAt.kill, _KillAt.seen = 5, []                       # the LM stream has 3 chunks per epoch
    with pytest.raises(KeyboardInterrupt):
        _unit(tasks, tmp_path / "killed", checkpoint_every=4)
    assert _KillAt.seen == [1, 2, 3, 4, 5]
    _KillAt.kill, _KillAt.seen = None, []
    again = _unit(tasks, tmp_path / "killed", checkpoint_every=4)       # step 4 = LM chunk 1: state carried
    assert _KillAt.seen == [5, 6, 7, 8]                                             # continued from step 4
    for key in ("metrics", "psi0", "history", "tensor_stats", "stats"):
        assert again[key] == ref[key], key


def _ddp_worker(rank, world, init_file, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tasks = synthetic_tasks(0, **TINY)
        tasks[1].dropout = 0.0                                     # equal to one process only without dropout
        res = _unit(tasks, os.path.join(out, "work"), device="cpu", checkpoint_every=3)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(res, f)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")
def test_two_gloo_processes_train_a_unit_like_one(tmp_path):
    mp.start_processes(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["psi0"] == r1["psi0"] and r0["metrics"] == r1["metrics"]
    tasks = synthetic_tasks(0, **TINY)
    tasks[1].dropout = 0.0
    one = _unit(tasks, tmp_path / "single")
    assert one["psi0"] == r0["psi0"] and [h["active"] for h in one["history"]] == [h["active"] for h in r0["history"]]
    for k, v in one["metrics"].items():
        assert r0["metrics"][k] == pytest.approx(v, rel=1e-3), k
    for group in ("modules", "blocks"):
        torch.testing.assert_close(torch.tensor(r0["tensor_stats"][group]), torch.tensor(one["tensor_stats"][group]),
                                   rtol=1e-3, atol=1e-5)


def test_quick_path_on_synthetic_stand_ins_and_resume(tmp_path, monkeypatch):
    tasks = synthetic_tasks(0, **TINY)
    opts = RunOptions(json=tmp_path / "cm" / "r.json", out=tmp_path / "cm", budget="quick", seeds=1)
    res = mc.run(opts, tasks=tasks, budget=BUDGET)
    store = tmp_path / "muir-units" / "quick" / "seed0"
    units = {}
    for p in store.rglob("*.json"):
        r = json.loads(p.read_text())["result"]
        units[(r["row"], "+".join(r["tasks"]))] = r
    assert sorted(units) == sorted([(r, s) for r in ("baseline", "muir-within") for s in "LSD"]
                                   + [("muir-across", "L+S+D")])
    rows = {(r["setting"][0], r["method"], r["metric"]): r for r in res["rows"]}
    for short, metric in (("L", "test_error_pct"), ("S", "test_perplexity"), ("D", "test_auc")):
        base = rows[(short, "baseline", metric)]["mean"]
        for row in mc.ROWS:
            r = rows[(short, row, metric)]
            unit = units[(row, "L+S+D" if row == "muir-across" else short)]
            assert r["values"] == [unit["metrics"][short]] and r["n"] == 1 and r["paper"] == mc.PAPER[short][row]
            sign = -1.0 if r["lower_is_better"] else 1.0
            assert r["gain_vs_baseline"] == pytest.approx(round(sign * (r["mean"] - base) / base, 4))
            assert unit["steps"] == BUDGET.steps
    acc = next(r for r in res["rows"] if r["metric"] == "active_hypermodules" and r["setting"] == "L+S+D")
    across = units[("muir-across", "L+S+D")]
    assert acc["locations"] == 201 + 16 + 25 == len(across["psi0"]) and acc["mean"] == len(set(across["psi0"]))
    assert acc["bank_params_start"] == parameter_count(torch.arange(242), 242, 4, (16, 16))   # pessimistic init
    hist = res["config"]["sharing_history"]
    assert len(hist) == BUDGET.generations + 1 and hist[0] == {"step": 0, "params": hist[0]["params"], "L": 201,
                                                               "S": 16, "D": 25}
    assert [h["step"] for h in hist] == [0, 4, 6]
    for png in ("fig3a_sharing_over_time.png", "fig3b_layer_sharing.png"):
        assert (tmp_path / "cm" / "muir-crossmodal" / png).is_file()

    def no_training(*a, **k):
        raise AssertionError("a finished unit was trained again")
    monkeypatch.setattr(mc, "train_unit", no_training)
    again = mc.run(opts, tasks=tasks, budget=BUDGET)                        # resumes: every unit reused
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
    paper = mc.BUDGETS["paper"]
    assert (paper.n_init, paper.n_iter, paper.generations, paper.hidden, paper.channels) == (2000, 1000, 1000, 256, 256)
