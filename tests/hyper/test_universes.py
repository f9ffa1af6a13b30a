"""Many independent runs as universes of one model: per-location search modes, per-universe best restore."""
import torch
from torch import nn

from tessera.hyper import MuirSearch, reparameterize, search_steps
from tessera.hyper.search import AlignmentSearch
from tessera.train import Task, Trainer, TrainConfig


def test_frozen_locations_get_no_challengers_and_random_ones_pick_at_random():
    s = AlignmentSearch(40, lam=3, p=1.0, groups=torch.arange(40) // 10, seed=0)
    frozen = torch.arange(40) < 10
    s.set_location_modes(frozen=frozen, random_pick=torch.arange(40) >= 30)
    psi0 = s.init_alignment()
    cand = s.propose(psi0)
    assert torch.equal(cand[:10], psi0[:10, None].expand(10, 4))                  # frozen: incumbent only
    assert (cand[10:, 1:] != cand[10:, :1]).any()
    scores = torch.zeros(40, 4)
    scores[:, 0] = 10.0                                                            # beliefs: keep the incumbent
    new = s.select(cand, scores)
    assert torch.equal(new[:30], psi0[:30])
    assert not torch.equal(new[30:], psi0[30:])                                    # random picks move


def test_each_universe_restores_its_own_best_generation():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1)) for _ in range(4)]
    muir = reparameterize(nets, block=(4, 4), context=1, lam=1, n_init=0, n_iter=2, n_generations=3, n_final=0,
                          groups=[0, 0, 1, 1], verbose=False)
    assert muir.group_members == [[0, 1, 2, 3]]
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    vals = iter([torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), torch.tensor([3.0, 2.0])])
    snaps = []

    def validate():
        snaps.append({k: v.clone() for k, v in muir.state_dict().items()})
        return next(vals)
    search = MuirSearch(muir, validate=validate)
    cfg = TrainConfig(steps=search_steps(muir.config), batch_size=8, multitask="sum", progress="off", log_every=0,
                      checkpoint_every=0, optim={"name": "adam", "lr": 1e-2}, schedule={"name": "constant"},
                      ema={"enabled": False})
    tasks = [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x)) for i in range(4)]
    Trainer(muir, tasks, cfg, param_groups=muir.param_groups(lr=1e-2), callbacks=[search]).fit()
    final = muir.state_dict()
    for key in ("tasks.0.model.0.weight", "tasks.1.generator.z", "tasks.0.generator.psi0"):
        assert torch.equal(final[key], snaps[0][key]), key                         # universe 0: generation 1
    for key in ("tasks.2.model.0.weight", "tasks.3.generator.z", "tasks.3.generator.psi0"):
        assert torch.equal(final[key], snaps[1][key]), key                         # universe 1: generation 2
    assert not torch.equal(snaps[0]["tasks.2.model.0.weight"], snaps[1]["tasks.2.model.0.weight"])
    assert search.history[0]["val"] == [1.0, 3.0]
