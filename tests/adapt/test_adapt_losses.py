"""The adversarial and moment-matching losses: values by hand, and they fall when trained (tiny domains)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from adapt_helpers import tiny_comp, tiny_iso

from tessera.adapt import ADDA, MomentMatching, adapt_m3sda
from tessera.adapt.adversarial import Discriminator, adversarial_target_loss, discriminator_loss
from tessera.adapt.moments import _mean_over_ranks, classifier_discrepancy, moment_distance
from tessera.errors import ConfigError, ShapeError
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


def test_moment_distance_custom_mean_and_errors():
    """``mean`` replaces the batch mean for every order (MomentMatching passes the mean over ranks):
    a mean that doubles every moment doubles the distance."""
    g = torch.Generator().manual_seed(0)
    fs = [torch.randn(5, 3, generator=g) + i for i in range(3)]
    ref = moment_distance(fs, k=2)
    assert torch.equal(moment_distance(fs), ref) and not torch.allclose(moment_distance(fs, k=3), ref)  # default k=2
    torch.testing.assert_close(moment_distance(fs, k=2, mean=lambda t: 2 * t.mean(0)), 2 * ref)
    torch.testing.assert_close(moment_distance(fs, k=2, target=1, mean=lambda t: 3 * t.mean(0)),
                               3 * moment_distance(fs, k=2, target=1))
    with pytest.raises(ConfigError, match="^moment_distance needs at least 2 domains, got 1$"):
        moment_distance(fs[:1])
    with pytest.raises(ConfigError, match="^moment order k must be >= 1, got 0$"):
        moment_distance(fs, k=0)
    with pytest.raises(ShapeError, match=r"^domains have feature sizes \[3, 3, 2\]; take them from one layer$"):
        moment_distance(fs[:2] + [fs[2][:, :2]])


def test_mean_over_ranks_in_one_process_is_the_batch_mean_value_and_gradient():
    f = torch.randn(6, 4, requires_grad=True)
    out = _mean_over_ranks(f)
    torch.testing.assert_close(out, f.mean(0))
    w = torch.randn(4)
    (g,) = torch.autograd.grad((out * w).sum(), f)
    torch.testing.assert_close(g, w.expand(6, 4) / 6)


def test_moment_matching_settings_defaults_and_errors():
    model = tiny_iso()
    model.add_target("t")
    pools = [(torch.randn(8, 16), torch.randint(0, 3, (8,)))]
    critics = [torch.nn.Linear(16, 3), torch.nn.Linear(16, 3)]
    m = MomentMatching(model, "t", pools, critics, per_source=4)
    assert m.settings() == {"target": "t", "lr": 1e-3, "final_lr": None, "clf_lr": 1e-3, "moment_weight": 1.0,
                            "discrepancy_weight": 1.0, "k": 2, "per_source": 4, "train_bn": False,
                            "pools": [[8, 16]]}
    assert MomentMatching(model, "t", pools, critics, per_source=4, target_bn="train").settings()["train_bn"] is True
    with pytest.raises(ConfigError, match="^moment matching needs two critics, got 1$"):
        MomentMatching(model, "t", pools, critics[:1], per_source=4)
    for bad in ([], [(torch.randn(8, 16), None)]):
        with pytest.raises(ConfigError, match="^moment matching needs at least one labelled source embedding pool$"):
            MomentMatching(model, "t", bad, critics, per_source=4)
    assert set(m.modules()) == {"critics"} and m.modules()["critics"] is m.critics


def test_discriminators_equal_their_documented_layers_by_hand():
    """Feature maps: conv3x3 -> LeakyReLU(0.2) -> conv3x3 stride 2 -> LeakyReLU(0.2) -> conv1x1 to one
    channel, averaged over space; vectors: Linear -> LeakyReLU -> Linear -> LeakyReLU -> Linear."""
    torch.manual_seed(0)
    d = Discriminator.for_features(torch.Size([3, 6, 6]), hidden=5)
    (w1, b1), (w2, b2), (w3, b3) = [(m.weight, m.bias) for m in d.layers if isinstance(m, torch.nn.Conv2d)]
    assert [tuple(p.shape) for p in d.parameters()] == [(5, 3, 3, 3), (5,), (5, 5, 3, 3), (5,), (1, 5, 1, 1), (1,)]
    x = torch.randn(4, 3, 6, 6)
    h = F.leaky_relu(F.conv2d(x, w1, b1, padding=1), 0.2)
    h = F.leaky_relu(F.conv2d(h, w2, b2, stride=2, padding=1), 0.2)
    assert h.shape == (4, 5, 3, 3)
    torch.testing.assert_close(d(x), F.conv2d(h, w3, b3).mean((1, 2, 3)))
    v = Discriminator.for_features((7,), hidden=4)
    (a1, c1), (a2, c2), (a3, c3) = [(m.weight, m.bias) for m in v.layers if isinstance(m, torch.nn.Linear)]
    assert [tuple(p.shape) for p in v.parameters()] == [(4, 7), (4,), (4, 4), (4,), (1, 4), (1,)]
    z = torch.randn(5, 7)
    ref = F.linear(F.leaky_relu(F.linear(F.leaky_relu(F.linear(z, a1, c1), 0.2), a2, c2), 0.2), a3, c3)[:, 0]
    torch.testing.assert_close(v(z), ref)
    assert Discriminator.for_features((3, 6, 6)).layers[0].out_channels == 64       # default width
    with pytest.raises(ShapeError, match=r"^features of per-sample shape \(2, 3\); a discriminator takes"):
        Discriminator.for_features((2, 3))


def test_adda_settings_defaults_and_shape_check(domains):
    sources, target = domains
    model = tiny_comp()
    model.add_target("t", from_domain="a")
    pool = torch.randn(10, 8, 2, 2)
    m = ADDA(model, "t", pool, Discriminator.for_features((8, 2, 2), hidden=4))
    assert m.settings() == {"target": "t", "lr": 1e-3, "final_lr": None, "disc_lr": 2e-4, "disc_final_lr": 1e-5,
                            "train_bn": False, "pool": [10, 8, 2, 2]}
    assert ADDA(model, "t", pool, m.disc, target_bn="train").settings()["train_bn"] is True
    assert set(m.modules()) == {"discriminator"} and m.modules()["discriminator"] is m.disc
    bad = ADDA(model, "t", torch.randn(10, 4), Discriminator.for_features((4,), hidden=4))
    cfg = TrainConfig(steps=1, batch_size=8, device="cpu", log_every=0, checkpoint_every=0, progress="off",
                      ema={"enabled": False})
    with pytest.raises(ShapeError, match=r"^source features \(4,\) vs target features \(8, 2, 2\); take both"):
        Trainer(model, [Task("t", train=target.x)], cfg, method=bad).fit()
