"""The adversarial and moment-matching losses fall when their steps run (tiny generated domains)."""
from __future__ import annotations

import torch
from adapt_helpers import tiny_comp

from tessera.adapt import (Discriminator, adapt_m3sda, adda_step, adversarial_target_loss, classifier_discrepancy,
                           discriminator_loss, feature_pool, m3sda_step, moment_distance)


def _mean(xs):
    return sum(xs) / len(xs)


def test_moment_distance_values_and_pairs():
    a, b, c = torch.zeros(4, 2), torch.ones(4, 2), torch.full((4, 2), 2.0)
    assert torch.isclose(moment_distance([a, b], k=1), torch.tensor(2 ** 0.5))
    # k=2 adds the distance of second moments: E[b^2] - E[a^2] = 1 per feature
    assert torch.isclose(moment_distance([a, b], k=2), torch.tensor(2 * 2 ** 0.5))
    # all pairs: (a,b)=sqrt2, (a,c)=2sqrt2, (b,c)=sqrt2 -> mean 4sqrt2/3
    assert torch.isclose(moment_distance([a, b, c], k=1), torch.tensor(4 * 2 ** 0.5 / 3))
    # M3SDA weighting with c the target: mean(src-tgt) + mean(src-src) = 1.5 sqrt2 + sqrt2
    assert torch.isclose(moment_distance([a, b, c], k=1, target=-1), torch.tensor(2.5 * 2 ** 0.5))
    assert float(classifier_discrepancy(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0


def test_discriminator_loss_decreases(domains):
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    fs = torch.cat([f for f, _ in feature_pool(model, sources, 48, embed=False)])
    with torch.no_grad():
        ft = model.features(target.x, "t")
    torch.manual_seed(0)
    disc = Discriminator.for_features(fs.shape[1:], hidden=16)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = discriminator_loss(disc(fs), disc(ft))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert _mean(losses[-5:]) < 0.7 * _mean(losses[:5])


def test_adda_step_target_loss_decreases_against_fixed_discriminator(domains):
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    fs = torch.cat([f for f, _ in feature_pool(model, sources, 48, embed=False)])
    torch.manual_seed(0)
    disc = Discriminator.for_features(fs.shape[1:], hidden=16)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    with torch.no_grad():
        ft = model.features(target.x, "t")
    for _ in range(30):                                   # a discriminator that separates the domains
        loss = discriminator_loss(disc(fs), disc(ft))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    frozen = torch.optim.SGD(disc.parameters(), lr=0.0)   # the discriminator no longer moves
    opt_t = torch.optim.Adam(model.target_parameters("t").values(), lr=0.1)
    with model.adapt_mode("t"):
        hist = [adda_step(lambda x: model.features(x, "t"), target.x, fs, disc, frozen, opt_t) for _ in range(25)]
        final = float(adversarial_target_loss(disc(model.features(target.x, "t"))).detach())
    assert final < hist[0]["target_loss"]
    assert all(set(h) == {"disc_loss", "target_loss", "disc_acc"} for h in hist)


def test_m3sda_moment_distance_decreases(domains):
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")

    def gap() -> float:  # moment distance of the whole target to fixed source pools (eval mode)
        pools = [e for e, _ in feature_pool(model, sources, 48, embed=True)]
        with torch.no_grad():
            model.eval()
            return float(moment_distance(pools + [model.embed(model.features(target.x, "t"))], target=-1))

    before = gap()
    hist = adapt_m3sda(model, sources, target, steps=40, batch_size=48, lr=0.1, pool=48, seed=0)
    assert _mean([h["moment"] for h in hist[-5:]]) < 0.9 * hist[0]["moment"]
    assert gap() < before


def test_m3sda_step_on_a_plain_feature_function():
    """The step works on any feature function and optimizer, not only on a DA model."""
    torch.manual_seed(0)
    enc = torch.nn.Linear(4, 6)
    src = [torch.randn(16, 6), torch.randn(16, 6) + 0.5]
    ys = [torch.randint(0, 3, (16,)), torch.randint(0, 3, (16,))]
    clfs = [torch.nn.Linear(6, 3), torch.nn.Linear(6, 3)]
    opt_c = torch.optim.Adam([p for c in clfs for p in c.parameters()], lr=1e-2)
    opt_t = torch.optim.Adam(enc.parameters(), lr=5e-2)
    x = torch.randn(16, 4) * 3 + 2
    hist = [m3sda_step(enc, x, src, ys, clfs, opt_c, opt_t) for _ in range(60)]
    assert _mean([h["moment"] for h in hist[-5:]]) < 0.5 * hist[0]["moment"]
