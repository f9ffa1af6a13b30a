"""The (1+lambda)-EA: proportional sampling, duplicates in selection, groups, determinism, scale."""
import time

import pytest
import torch

from tessera.errors import ShapeError
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
