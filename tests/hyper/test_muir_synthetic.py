"""The synthetic benchmark: the hand-written timing reference's analytic gradients == autograd; the
public-API experiment (one vectorized group, the engine) lays out universes right and runs end to end."""
import json

import numpy as np
import pytest
import torch

from tessera.experiments import EXPERIMENTS, RunOptions
from tessera.bench.muir_reference import TRUTH, SyntheticProgram
from tessera.hyper import MuirConfig


def _fake_data(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for setting in ("clean", "noisy"):
        h = rng.normal(size=(3, 20))
        w = h[np.arange(30) // 10] * rng.normal(size=(30, 1))
        X, Xt = rng.uniform(-1, 1, (30, 15, 20)), rng.uniform(-1, 1, (30, 50, 20))
        out[setting] = {"train_X": X, "train_Y": np.einsum("tsd,td->ts", X, w),
                        "test_X": Xt, "test_Y": np.einsum("tsd,td->ts", Xt, w)}
    return out


@pytest.mark.parametrize("merging", [True, False])
def test_analytic_gradients_match_autograd(merging):
    prog = SyntheticProgram(_fake_data(), 2, MuirConfig.synthetic(), [1, 3, 8, 6, 14], torch.device("cpu"),
                            dtype=torch.float64)
    prog.begin_generation()
    with torch.no_grad():
        prog.s.normal_()
        prog.theta.add_(torch.randn_like(prog.theta) * 0.1)
    if not merging:
        prog.end_generation()
    theta, s = prog.theta.clone().requires_grad_(), prog.s.clone().requires_grad_()
    g_theta, g_s = torch.autograd.grad(prog.loss(merging, theta, s), (theta, s), allow_unused=True)
    a, b = prog.grads(merging)
    torch.testing.assert_close(a, g_theta, rtol=1e-10, atol=1e-12)
    if merging:
        torch.testing.assert_close(b, g_s, rtol=1e-10, atol=1e-12)


def test_layout_oracle_and_universes():
    prog = SyntheticProgram(_fake_data(), 2, MuirConfig.synthetic(), [1, 3, 8, 6, 14], torch.device("cpu"))
    assert prog.U == 12 and prog.N == 360
    for u in range(prog.U):
        locs = prog.loc_of[u]
        assert torch.equal(prog.loc_u[locs], torch.full((30,), u))
        assert torch.equal(prog.loc_task[locs], torch.arange(30))
        psi = prog.psi0[locs]
        if prog.u_method[u] == 1:                                        # Oracle: the true groups
            assert torch.equal(prog.loc_task[psi], TRUTH * 10)
        else:
            assert torch.equal(psi, locs)                                # pessimistic init
    for _ in range(3):
        prog.begin_generation()
        assert torch.equal(prog.loc_u[prog.cand], prog.loc_u[:, None].expand_as(prog.cand))   # universes apart
        prog.end_generation()


def test_quick_budget_end_to_end(muir_data_root, tmp_path):
    opts = RunOptions(json=tmp_path / "r.json", out=tmp_path, budget="quick", data_root=muir_data_root, seeds=1)
    res = EXPERIMENTS.get("muir-synthetic")(opts)
    rows = {(r["setting"], r["method"], r["metric"]): r for r in res["rows"]}
    assert {("clean", m, "rmse") for m in ("STL", "MUiR+Random", "MUiR+Oracle", "MUiR")} <= set(rows)
    assert rows[("noisy", "MUiR", "rmse")]["paper"] == 0.38 and ("clean", "MUiR", "generations_to_grouping") in rows
    assert all(np.isfinite(r["mean"]) for k, r in rows.items() if k[2] == "rmse")
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "muir-synthetic"
    assert (tmp_path / "muir-synthetic" / "alignment.png").is_file()


def test_public_api_layout_oracle_and_universes():
    """The experiment's own path: 30*U reparameterized models in ONE vectorized group, universes apart."""
    from tessera.experiments.muir_synthetic import build
    run = build(_fake_data(), 2, MuirConfig.synthetic(), [1, 3, 8, 6, 14])
    muir = run.muir
    assert run.U == 12 and len(muir) == 360 and muir.group_members == [list(range(360))]
    assert run.data["train"][0].shape == (60, 10, 20) and run.data["test"][1].shape == (60, 50, 1)  # per data set
    assert run.index.shape == (360,) and run.stl_index.shape == (120,)
    assert torch.equal(run.stl_index, torch.arange(60).view(2, 1, 30).expand(2, 2, 30).flatten())
    setting, seed, method = run.universe(torch.arange(run.U))
    psi = muir.alignment()
    for u in range(run.U):
        locs = run.loc_of(u)
        if method[u] == 1:                                               # Oracle: the true groups, frozen
            assert torch.equal(psi[locs], u * 30 + TRUTH * 10)
        else:
            assert torch.equal(psi[locs], locs)                          # pessimistic init
        X = torch.as_tensor(_fake_data()[("clean", "noisy")[setting[u]]]["test_X"])     # its setting's 30 tasks
        assert torch.allclose(run.data["test"][0][run.index[locs]].double(), X)
    locs_u = torch.arange(360) // 30                                     # universe of every location
    for _ in range(3):
        muir.begin_generation()
        cand = muir.candidates()
        assert torch.equal(locs_u[cand], locs_u[:, None].expand_as(cand))                     # universes apart
        oracle = method[locs_u] == 1
        assert torch.equal(cand[oracle], psi[oracle][:, None].expand(-1, cand.shape[1]))    # no challengers
        muir.end_generation()


def test_bench_many_tasks_rows(tmp_path):
    from tessera.bench.muir_many import run
    res = run(RunOptions(json=tmp_path / "b.json", budget="quick", seeds=1), _smoke=True)
    assert res["name"] == "muir-many-tasks" and [r["setting"].split(":")[0] for r in res["rows"]] == [
        "synthetic", "digits", "search step", "mix forward + backward"]
    for r in res["rows"]:
        assert r["baseline_s"] > 0 and r["candidate_s"] > 0 and r["target_ratio"] == 1.3
        assert r["ratio"] == pytest.approx(r["candidate_s"] / r["baseline_s"])
    assert json.loads((tmp_path / "b.json").read_text())["rows"] == res["rows"]


def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
    """A run killed mid-generation continues from its last checkpoint (search history included) and ends
    exactly where an uninterrupted run does."""
    from tessera.experiments import muir_synthetic as ms
    cfg = MuirConfig.synthetic(n_init=4, n_generations=6, n_iter=5, n_final=10)
    val = [1, 3, 8, 6, 14]
    ref = ms.train(ms.build(_fake_data(), 1, cfg, val), cfg)

    def kill(self, trainer, step, logs):
        if step == 23:                                                  # mid-generation, after the step-21 checkpoint
            raise KeyboardInterrupt
    monkeypatch.setattr(ms.History, "on_step_end", kill, raising=False)
    with pytest.raises(KeyboardInterrupt):
        ms.train(ms.build(_fake_data(), 1, cfg, val), cfg, out_dir=tmp_path, checkpoint_every=7)
    monkeypatch.undo()
    steps = []
    monkeypatch.setattr(ms.History, "on_step_start", lambda self, tr, step: steps.append(step), raising=False)
    again = ms.train(ms.build(_fake_data(), 1, cfg, val), cfg, out_dir=tmp_path, checkpoint_every=7)
    assert steps[0] == 21 and len(steps) == ms.search_steps(cfg) - 21
    assert torch.equal(again["psi"], ref["psi"]) and len(ref["psi"]) == cfg.n_generations + 1
    assert torch.equal(again["muir"], ref["muir"]) and torch.equal(again["stl"], ref["stl"])
    steps.clear()
    done = ms.train(ms.build(_fake_data(), 1, cfg, val), cfg, out_dir=tmp_path, checkpoint_every=7)  # finished: reused
    assert steps == [] and torch.equal(done["psi"], ref["psi"]) and torch.equal(done["muir"], ref["muir"])
