"""The adversarial and moment-matching losses: values by hand, and they fall when trained (tiny domains)."""
from __future__ import annotations

import torch
from adapt_helpers import tiny_comp, tiny_iso

from tessera.adapt import ADDA, adapt_m3sda
from tessera.adapt.adversarial import Discriminator, adversarial_target_loss, discriminator_loss
from tessera.adapt.moments import classifier_discrepancy, moment_distance
from tessera.adapt.training import feature_pool
from tessera.train import Task, Trainer, TrainConfig


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


def test_adda_target_update_lowers_the_inverted_label_loss_against_a_fixed_discriminator(domains):
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    fs = torch.cat([f for f, _ in feature_pool(model, sources, 48, embed=False)])
    with torch.no_grad():
        model.eval()
        ft = model.features(target.x, "t")
    torch.manual_seed(0)
    disc = Discriminator.for_features(fs.shape[1:], hidden=16)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(30):                                   # a discriminator that separates the domains
        loss = discriminator_loss(disc(fs), disc(ft))
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    method = ADDA(model, "t", fs, disc, lr=0.1, disc_lr=1e-12, disc_final_lr=None)   # it no longer moves
    cfg = TrainConfig(steps=25, batch_size=48, device="cpu", log_every=0, checkpoint_every=0, progress="off",
                      ema={"enabled": False})
    Trainer(model, [Task("t", train=target.x)], cfg, method=method).fit()
    hist = method.history
    assert all(set(h) == {"disc_loss", "target_loss", "disc_acc"} for h in hist)
    assert hist[-1]["target_loss"] < 0.95 * hist[0]["target_loss"]


def test_m3sda_moment_distance_decreases(domains):
    sources, target = domains
    model = tiny_iso()
    model.add_target("t")

    def gap() -> float:  # moment distance of the whole target to fixed source pools (eval mode)
        pools = [e for e, _ in feature_pool(model, sources, 48, embed=True)]
        with torch.no_grad():
            model.eval()
            return float(moment_distance(pools + [model.embed(model.features(target.x, "t"))], target=-1))

    before = gap()
    hist = adapt_m3sda(model, sources, target, steps=40, batch_size=48, lr=0.1, pool=48, seed=0)
    assert all(set(h) == {"clf_loss", "moment", "discrepancy"} for h in hist)
    assert gap() < 0.8 * before
