"""The (1+lambda)-EA: proportional sampling, duplicates in selection, groups, determinism, scale."""
import math
import time

import pytest
import torch

from tessera.errors import ConfigError, ShapeError
from tessera.hyper import MuirConfig
from tessera.hyper.search import AlignmentSearch


def test_pessimistic_init_and_initial_scores():
    s = AlignmentSearch(5, lam=4)
    assert s.init_alignment().tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(s.initial_scores(), torch.zeros(5, 5))       # alpha = lambda/(lambda+1) -> no bias
    sc = s.initial_scores(alpha=0.2)
    torch.testing.assert_close(torch.softmax(sc, 1)[:, 1:].sum(1), torch.full((5,), 0.2))   # Eq. 12


def test_proportional_sampling_with_eps_reactivation():
    s = AlignmentSearch(10, lam=1, eps=0.1, seed=1)
    psi0 = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])                # usage 5, 3, 2; 7 unused
    mods = s.sample_modules(psi0, torch.zeros(100_000, dtype=torch.long), 1).flatten()
    freq = torch.bincount(mods, minlength=10).double() / mods.numel()
    expect = torch.tensor([0.45, 0.27, 0.18] + [0.1 / 7] * 7, dtype=torch.float64)   # Eq. 13
    torch.testing.assert_close(freq, expect, atol=0.006, rtol=0)
    s0 = AlignmentSearch(10, lam=1, eps=0.0, seed=1)
    assert set(s0.sample_modules(psi0, torch.zeros(5000, dtype=torch.long), 1).unique().tolist()) == {0, 1, 2}


def test_propose_touches_a_p_fraction():
    s = AlignmentSearch(40, lam=3, p=0.25, seed=0)
    psi0 = s.init_alignment()
    for _ in range(5):
        cand = s.propose(psi0)
        assert torch.equal(cand[:, 0], psi0)
        assert int(s.sample_locations().sum()) == 10
        assert int((cand[:, 1:] != psi0[:, None]).any(1).sum()) <= 10


def test_selection_sums_duplicate_beliefs():
    s = AlignmentSearch(2, lam=3)
    cand = torch.tensor([[0, 1, 1, 2], [5, 5, 5, 5]])
    p = torch.tensor([[0.35, 0.25, 0.25, 0.15], [0.1, 0.2, 0.3, 0.4]])
    # location 0: module 1 has 0.5 in total (> 0.35 for the incumbent) although each copy is smaller
    assert s.select(cand, p.log()).tolist() == [1, 5]
    h = s.beliefs(cand, p.log())
    torch.testing.assert_close(h[0], torch.tensor([0.35, 0.5, 0.5, 0.15]))
    tie = torch.zeros(1, 4)
    assert s.select(torch.tensor([[3, 4, 5, 6]]), tie).tolist() == [3]     # a tie keeps the incumbent
    with pytest.raises(ShapeError):
        s.select(cand, torch.zeros(2, 3))


def test_groups_are_respected():
    groups = torch.arange(60) // 20
    s = AlignmentSearch(60, lam=4, p=1.0, eps=0.3, groups=groups, seed=3)
    psi0 = s.init_alignment()
    for _ in range(20):
        cand = s.propose(psi0)
        assert torch.equal(cand // 20, groups[:, None].expand_as(cand))
        psi0 = s.select(cand, torch.randn(cand.shape))
    assert torch.equal(psi0 // 20, groups)
    half = AlignmentSearch(60, lam=1, p=0.5, groups=groups, seed=0)
    chosen = half.sample_locations()
    assert torch.bincount(groups[chosen], minlength=3).tolist() == [10, 10, 10]   # ceil(p L_g) per group


def test_determinism_given_seed_and_independent_of_global_rng():
    def run(seed):
        s = AlignmentSearch(200, lam=2, p=0.5, seed=seed)
        psi0 = s.init_alignment()
        out = []
        for i in range(5):
            torch.manual_seed(i * 7 + seed)        # global RNG noise must not matter
            torch.rand(13)
            cand = s.propose(psi0)
            psi0 = s.select(cand, torch.arange(cand.numel(), dtype=torch.float32).view_as(cand).sin())
            out.append(cand)
        return torch.stack(out)
    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


def test_state_dict_resumes_the_same_draws():
    s = AlignmentSearch(50, lam=2, seed=4)
    psi0 = s.init_alignment()
    state = s.state_dict()
    a = s.propose(psi0)
    s.load_state_dict(state)
    assert torch.equal(s.propose(psi0), a)


def test_random_selection_picks_candidates():
    s = AlignmentSearch(1000, lam=3, selection="random", seed=0)
    cand = torch.arange(4).repeat(1000, 1)
    picks = s.select(cand, torch.zeros(1000, 4))
    assert set(picks.tolist()) == {0, 1, 2, 3}


def test_ten_thousand_locations_and_modules_quickly():
    L = 10_000
    s = AlignmentSearch(L, lam=4, p=0.5, seed=0)
    psi0 = s.init_alignment()
    t = time.perf_counter()
    for _ in range(3):
        cand = s.propose(psi0)
        psi0 = s.select(cand, torch.randn(L, 5))
    per_gen = (time.perf_counter() - t) / 3
    assert per_gen < 2.0, per_gen
    assert 0 < int((torch.bincount(psi0, minlength=L) > 0).sum()) < L    # sharing happened


def test_defaults_are_muir_configs_and_bad_settings_are_named():
    s, cfg = AlignmentSearch(4), MuirConfig()
    assert (s.lam, s.p, s.eps, s.seed, s.selection) == (cfg.lam, cfg.p, cfg.eps, cfg.seed, cfg.selection)
    assert AlignmentSearch(1).init_alignment().tolist() == [0] and AlignmentSearch(3, num_modules=1).K == 1
    for L, K in ((0, None), (2, 0)):
        with pytest.raises(ConfigError, match=rf"^AlignmentSearch needs >= 1 location and hypermodule \(got L={L}, "
                                              rf"K={K if K is not None else L}\)$"):
            AlignmentSearch(L, num_modules=K)
    with pytest.raises(ConfigError, match=r"^selection must be 'belief' or 'random', got 'best'$"):
        AlignmentSearch(4, selection="best")
    with pytest.raises(ShapeError, match=r"^groups must have shape \(4,\), got \(3,\)$"):
        AlignmentSearch(4, groups=torch.zeros(3))
    with pytest.raises(ShapeError, match=r"^pass module_groups \(5,\) when K != L and groups are given$"):
        AlignmentSearch(4, num_modules=5, groups=torch.zeros(4))
    with pytest.raises(ShapeError, match=r"^module_groups must have shape \(5,\), got \(4,\)$"):
        AlignmentSearch(4, num_modules=5, groups=torch.zeros(4), module_groups=torch.zeros(4))
    with pytest.raises(ShapeError, match=r"^psi0 has 5 entries for 4 locations$"):
        AlignmentSearch(4).propose(torch.arange(5))
    with pytest.raises(ShapeError, match=r"^cand \(2, 4\) and scores \(2, 3\) must have the same shape$"):
        AlignmentSearch(2, lam=3).beliefs(torch.zeros(2, 4), torch.zeros(2, 3))


def test_module_weights_of_eq13_by_hand():
    """Groups of 1, 3 and 2 locations: used modules get (1 - eps) * use / L_g, the unused of a group share eps."""
    groups = torch.tensor([0, 1, 1, 1, 2, 2])
    s = AlignmentSearch(6, eps=0.1, groups=groups)
    w = s.module_weights(torch.tensor([0, 1, 1, 2, 4, 5]))                  # usage 1 | 2, 1, 0 | 1, 1
    expect = torch.tensor([0.9, 0.9 * 2 / 3, 0.9 / 3, 0.1, 0.9 / 2, 0.9 / 2], dtype=torch.float64)
    torch.testing.assert_close(w, expect)


def test_more_hypermodules_than_locations_and_no_unused_one():
    s = AlignmentSearch(3, num_modules=6, eps=0.0, seed=2)                  # K != L, one universe
    mods = s.sample_modules(torch.tensor([0, 0, 5]), torch.zeros(30_000, dtype=torch.long), 1).flatten()
    freq = torch.bincount(mods, minlength=6).double() / mods.numel()
    torch.testing.assert_close(freq, torch.tensor([2 / 3, 0, 0, 0, 0, 1 / 3], dtype=torch.float64), atol=0.01, rtol=0)
    s = AlignmentSearch(2, eps=0.5, seed=2)          # every module used: weights sum to 1 - eps, still 50/50
    mods = s.sample_modules(torch.tensor([0, 1]), torch.zeros(20_000, dtype=torch.long), 1).flatten()
    assert abs(float((mods == 0).double().mean()) - 0.5) < 0.015


@pytest.mark.parametrize("u", [0.0, 1.0 - 2.0 ** -53])           # the extreme draws of torch.rand(float64)
def test_extreme_uniforms_never_sample_a_zero_weight_hypermodule(monkeypatch, u):
    """eps = 0: unused hypermodules have weight 0; at u = 0 and at the largest u < 1 (whose target rounds
    onto the group's last cumulative weight) the draw still lands on a used hypermodule of the group."""
    monkeypatch.setattr(torch, "rand", lambda *size, generator=None, dtype=None: torch.full(size, u, dtype=dtype))
    s = AlignmentSearch(2, eps=0.0)
    assert s.sample_modules(torch.tensor([1, 1]), torch.zeros(3, dtype=torch.long), 2).unique().tolist() == [1]
    s = AlignmentSearch(3, eps=0.0, groups=torch.tensor([0, 1, 1]))
    assert s.sample_modules(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]), 2).tolist() == [[0, 0], [1, 1], [1, 1]]


def test_sampled_locations_are_a_uniformly_random_subset():
    s = AlignmentSearch(10, p=0.3, seed=5)
    draws = torch.stack([s.sample_locations() for _ in range(2000)])      # (2000, 10)
    assert (draws.sum(1) == 3).all()
    torch.testing.assert_close(draws.double().mean(0), torch.full((10,), 0.3, dtype=torch.float64), atol=0.04, rtol=0)


def test_beliefs_add_the_probabilities_of_unequal_duplicates():
    s = AlignmentSearch(1, lam=2)
    p = torch.tensor([[0.4, 0.35, 0.25]])
    torch.testing.assert_close(s.beliefs(torch.tensor([[0, 1, 1]]), p.log()), torch.tensor([[0.4, 0.6, 0.6]]))
    assert s.select(torch.tensor([[0, 1, 1]]), p.log()).tolist() == [1]


def test_frozen_and_random_pick_locations():
    L = 400
    s = AlignmentSearch(L, lam=3, p=1.0, seed=0)
    with pytest.raises(ShapeError, match=rf"^frozen must have shape \({L},\), got \(3,\)$"):
        s.set_location_modes(frozen=torch.zeros(3))
    with pytest.raises(ShapeError, match=rf"^random_pick must have shape \({L},\), got \(3,\)$"):
        s.set_location_modes(random_pick=torch.zeros(3))
    odd = torch.arange(L) % 2 == 1
    s.set_location_modes(frozen=odd.long())                                   # any 0/1 tensor
    psi0 = s.init_alignment()
    cand = s.propose(psi0)
    assert torch.equal(cand[odd], psi0[odd, None].expand(-1, 4))              # frozen: no challengers
    assert (cand[~odd, 1:] != psi0[~odd, None]).any(1).float().mean() > 0.9   # the others: p = 1
    assert s.random_pick is None

    def picks(seed):
        r = AlignmentSearch(L, lam=3, seed=0)
        r.set_location_modes(random_pick=~odd)
        torch.manual_seed(seed)                                                # the global RNG does not matter
        scores = torch.zeros(L, 4)
        scores[:, 0] = 10.0                                                    # beliefs pick the incumbent
        return r.select(torch.arange(4 * L).view(L, 4), scores) - 4 * torch.arange(L)   # the picked column
    col = picks(0)
    assert (col[odd] == 0).all()
    assert torch.bincount(col[~odd], minlength=4).min() > 30                  # uniform over 4 columns: ~50 each
    assert torch.equal(col, picks(1))
    s.set_location_modes()                                                     # back to the plain search
    assert s.frozen is None and s.random_pick is None


def test_random_selection_uses_only_the_search_rng():
    def run(seed):
        s = AlignmentSearch(100, lam=3, selection="random", seed=0)
        torch.manual_seed(seed)
        return s.select(torch.arange(4).repeat(100, 1), torch.zeros(100, 4))
    assert torch.equal(run(0), run(1))


def test_initial_scores_by_eq12():
    s = AlignmentSearch(3, lam=1).initial_scores(alpha=0.2)
    torch.testing.assert_close(s, torch.tensor([[0.0, math.log(0.25)]] * 3))        # log(alpha / (lambda (1 - alpha)))
    assert torch.equal(AlignmentSearch(3, lam=0).initial_scores(alpha=0.5), torch.zeros(3, 1))   # no challengers
    assert AlignmentSearch(3, lam=2).initial_scores(dtype=torch.float64).dtype == torch.float64


def test_module_groups_given_and_a_universe_without_hypermodules_refused():
    # hypermodules 4, 5 form a universe without locations (never sampled); 0-1 and 2-3 serve two universes
    s = AlignmentSearch(4, num_modules=6, eps=0.2, groups=torch.tensor([0, 0, 1, 1]),
                        module_groups=torch.tensor([0, 0, 1, 1, 2, 2]), seed=1)
    mods = s.sample_modules(torch.tensor([0, 0, 2, 2]), torch.tensor([0, 1]).repeat(5000), 1).view(5000, 2)
    assert set(mods[:, 0].tolist()) == {0, 1} and set(mods[:, 1].tolist()) == {2, 3}
    with pytest.raises(ConfigError, match=r"^group\(s\) \[7\] have locations but no hypermodule in module_groups; "):
        AlignmentSearch(2, num_modules=2, groups=torch.tensor([0, 7]), module_groups=torch.tensor([0, 0]))
