"""Dinucleotide shuffling (DeepBind's negatives): counts and ends kept, every Eulerian path reachable."""
import random

from tessera.data.genomics import dinucleotide_shuffle


def test_dinucleotide_shuffle_keeps_counts_and_ends():
    rng = random.Random(0)
    for _ in range(300):
        s = "".join(rng.choice("ACGTN") for _ in range(rng.randint(1, 60)))
        t = dinucleotide_shuffle(s, rng)
        assert sorted(zip(s, s[1:])) == sorted(zip(t, t[1:])) and t[:1] == s[:1] and t[-1:] == s[-1:]


def test_dinucleotide_shuffle_reaches_every_eulerian_path():
    rng = random.Random(0)
    seen = {dinucleotide_shuffle("ACAGATA", rng) for _ in range(300)}   # A->{C,G,T} in any order: 3! = 6 paths
    assert len(seen) == 6
