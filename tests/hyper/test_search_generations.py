"""Paper 003 S.3: every generation of MUiR's search starts the soft-merge scores from scratch, their
optimizer state included. Checked on the engine against Adam's definition, not against the code under
test: the scores' Adam step count restarts at 1 each generation, and the first step of a generation
moves every score by exactly lr (Adam's first step is lr * g / |g|), which a carried-over state breaks."""
import pytest
import torch
from torch import nn

from tessera.hyper import MuirSearch, reparameterize, search_steps
from tessera.train import Task, Trainer, TrainConfig

LR = 1e-2


def _run(lam=2, vectorize="auto"):
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1)) for _ in range(3)]
    muir = reparameterize(nets, block=(4, 4), context=1, lam=lam, p=1.0, n_init=2, n_iter=3, n_generations=3,
                          n_final=2, verbose=False, vectorize=vectorize)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 4, generator=g), torch.randn(16, 1, generator=g)
    tasks = [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x), order="sequential")
             for i in range(3)]
    cfg = TrainConfig(steps=search_steps(muir.config), batch_size=16, multitask="sum", progress="off", log_every=0,
                      checkpoint_every=0, optim={"name": "adam", "lr": LR, "eps": 1e-8, "weight_decay": 0.0},
                      schedule={"name": "constant"}, ema={"enabled": False})
    seen: list[dict] = []

    class Watch:                                         # runs after MuirSearch (which begins the generation)
        def on_step_start(self, trainer, step):
            self.before = [s.detach().clone() for s in muir.scores()]

        def on_step_end(self, trainer, step, logs):
            opt = trainer.optimizers["main"]
            scores = opt.param_groups[-1]["params"]     # muir.param_groups: the scores' group comes last
            seen.append({"step": step, "merging": any(gn.is_merging for gn in muir.generators),
                         "n_scores": len(scores),
                         "adam_steps": [int(opt.state[s]["step"]) if s in opt.state else 0 for s in scores],
                         "bank_steps": int(opt.state[muir.bank.H]["step"]),
                         "delta": [(s.detach() - b).abs() for s, b in zip(muir.scores(), self.before)]})

    w = Watch()
    tr = Trainer(muir, tasks, cfg, param_groups=muir.param_groups(lr=LR), callbacks=[MuirSearch(muir), w])
    tr.fit()
    return muir, seen


@pytest.mark.parametrize("vectorize", [False, True])   # per-task scores, or one stacked tensor per task group
def test_scores_optimizer_state_restarts_every_generation(vectorize):
    muir, seen = _run(vectorize=vectorize)
    lr_s = muir.config.lr_scores
    n_init, n_iter = muir.config.n_init, muir.config.n_iter
    search = [r for r in seen if n_init < r["step"] <= n_init + 3 * n_iter]     # engine steps are 1-based here
    assert len(search) == 3 * n_iter and all(r["merging"] or (r["step"] - n_init) % n_iter == 0 for r in search)
    for r in search:
        k = (r["step"] - n_init - 1) % n_iter + 1                               # step within its generation
        assert r["adam_steps"] == [k] * r["n_scores"] and r["n_scores"] >= 1, r["step"]
        assert r["bank_steps"] == r["step"]                                     # the rest is never reset
    for r in search:
        if (r["step"] - n_init - 1) % n_iter == 0:                              # first step of a generation
            d = torch.cat([t.reshape(-1) for t in r["delta"]])
            moved = d[d > 0.01 * lr_s]
            assert moved.numel() > 0.9 * d.numel()
            torch.testing.assert_close(moved, torch.full_like(moved, lr_s), rtol=1e-3, atol=0)


def test_scores_are_reset_to_eq_12_at_every_generation():
    """At each generation start the scores are s_0 = 0 and Eq. 12's value for the challengers (0 for the
    default alpha = lambda / (lambda + 1)): nothing learned in a previous generation carries over."""
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)) for _ in range(2)]
    muir = reparameterize(nets, block=(4, 4), context=1, lam=1, p=1.0, verbose=False)
    opt = torch.optim.Adam(muir.param_groups(lr=LR))
    x = torch.randn(8, 4)
    for _ in range(2):
        muir.begin_generation(opt)
        assert all(torch.equal(s, torch.zeros_like(s)) for s in muir.scores())
        assert all(s not in opt.state for s in muir.scores())
        for _ in range(2):
            opt.zero_grad()
            sum(m(x).square().mean() for m in muir).backward()
            opt.step()
        assert any(not torch.equal(s, torch.zeros_like(s)) for s in muir.scores())
        muir.end_generation()


def test_search_state_and_init_errors():
    from tessera.errors import ConfigError
    from tessera.hyper.search import AlignmentSearch
    s = AlignmentSearch(4, lam=1, seed=7)
    s.select(s.propose(s.init_alignment()), torch.zeros(4, 2))
    st = s.state_dict()
    assert sorted(st) == ["generation", "rng", "seed"] and int(st["seed"]) == 7 and int(st["generation"]) == 1
    with pytest.raises(ConfigError, match=r"^pessimistic init needs K >= L hypermodules \(got K=3, L=4\)$"):
        AlignmentSearch(4, num_modules=3).init_alignment()
