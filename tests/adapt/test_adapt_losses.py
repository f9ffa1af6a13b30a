"""The adversarial and moment-matching losses: values by hand, and they fall when trained (tiny domains)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
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


def test_adversarial_losses_by_hand():
    """BCE of a logit z: -log sigmoid(z) against label 1, -log(1 - sigmoid(z)) = -log sigmoid(-z) against 0."""
    ls, lt = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 3.0, 0.5])
    ce = lambda z: math.log1p(math.exp(-z))                              # -log sigmoid(z)  # noqa: E731
    by_hand_d = 0.5 * ((ce(0.0) + ce(2.0)) / 2 + (ce(1.0) + ce(-3.0) + ce(-0.5)) / 3)
    assert float(discriminator_loss(ls, lt)) == pytest.approx(by_hand_d, rel=1e-6)
    # the target's loss uses INVERTED labels: target features labelled "source" (1)
    assert float(adversarial_target_loss(lt)) == pytest.approx((ce(-1.0) + ce(3.0) + ce(0.5)) / 3, rel=1e-6)
    assert float(adversarial_target_loss(torch.tensor([10.0]))) < 1e-4   # fooled discriminator: ~0 loss


def test_adda_target_update_fools_a_fixed_discriminator(domains):
    """Measured without the loss under test: after ADDA's target steps against a frozen discriminator,
    its "source" logit rises on (almost) every target image (only the 3 x 2 mixture logits move)."""
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    fs = torch.cat([f for f, _ in feature_pool(model, sources, 48, embed=False)])

    def target_logits():
        with torch.no_grad():
            model.eval()
            return disc(model.features(target.x, "t"))
    torch.manual_seed(0)
    disc = Discriminator.for_features(fs.shape[1:], hidden=16)
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(30):                                   # a discriminator that separates the domains
        with torch.no_grad():
            model.eval()
            f_t = model.features(target.x, "t")
        loss = 0.5 * (-F.logsigmoid(disc(fs)).mean() - F.logsigmoid(-disc(f_t)).mean())
        opt_d.zero_grad()
        loss.backward()
        opt_d.step()
    frozen = [p.clone() for p in disc.parameters()]
    before = target_logits()
    assert float((before > 0).float().mean()) < 0.5       # it does call the target "target" at first
    method = ADDA(model, "t", fs, disc, lr=0.1, disc_lr=1e-12, disc_final_lr=None)   # it no longer moves
    cfg = TrainConfig(steps=25, batch_size=48, device="cpu", log_every=0, checkpoint_every=0, progress="off",
                      ema={"enabled": False})
    Trainer(model, [Task("t", train=target.x)], cfg, method=method).fit()
    assert all(torch.allclose(p, q, rtol=0, atol=1e-9) for p, q in zip(disc.parameters(), frozen))
    after = target_logits()
    assert all(set(h) == {"disc_loss", "target_loss", "disc_acc"} for h in method.history)
    assert float(after.mean()) > float(before.mean()) + 0.2
    assert float((after > before).float().mean()) > 0.9             # almost every target image looks more "source"


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
