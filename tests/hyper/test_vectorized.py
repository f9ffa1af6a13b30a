"""Vectorized task groups == the per-task path: outputs, gradients, search decisions, state_dict, export."""
import copy

import pytest
import torch
from torch import nn

from tessera.hyper import export, reparameterize, vectorize
from tessera.train import Task, Trainer, TrainConfig


class _Seq(nn.Module):
    """Conv1d over (B, C, T) then an LSTM over time: a sequence model."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h, _ = self.lstm(torch.relu(self.conv(x)).transpose(1, 2))
        return self.head(h[:, -1])


class _BiLM(nn.Module):
    """Embedding, a 2-layer bidirectional LSTM (time first) from a given state, a head: a language model."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 8)
        self.lstm = nn.LSTM(8, 4, num_layers=2, bidirectional=True)
        self.head = nn.Linear(8, 11)

    def forward(self, x):                                    # x (B, S) token ids
        e = self.emb(x).transpose(0, 1)                      # (S, B, 8)
        h0 = torch.ones(4, x.shape[0], 4, dtype=e.dtype) * 0.1
        out, (h, c) = self.lstm(e, (h0, -h0))
        return self.head(out).sum(0) + c.sum()               # uses the output and the final cell state


ZOO = {   # name: (model factory, input (B, ...), reparameterize kwargs)
    "linear": (lambda: nn.Linear(8, 2, bias=False), (5, 8), dict(block=(8, 1), target_modules=[""])),
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)),
            (5, 6), dict(block=(4, 4))),
    "cnn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(),
                                  nn.Flatten(), nn.Linear(4 * 2 * 2, 3)),
            (2, 1, 8, 8), dict(block=(4, 4))),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3, padding=1), nn.ReLU(),
                                     nn.Flatten(), nn.Linear(4 * 6, 1)),
               (3, 2, 8), dict(block=(4, 4))),
    "cnn_bn": (lambda: nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4, momentum=0.3), nn.ReLU(),
                                     nn.Conv2d(4, 4, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3)),
               (4, 1, 8, 8), dict(block=(4, 4))),          # each member keeps its own BN statistics
    "mlp_bn": (lambda: nn.Sequential(nn.Linear(6, 8, bias=False), nn.BatchNorm1d(8), nn.Tanh(),
                                     nn.Linear(8, 8, bias=False), nn.BatchNorm1d(8, affine=False), nn.Linear(8, 2)),
               (5, 6), dict(block=(4, 4))),
    "lstm": (_Seq, (3, 4, 6), dict(block=(8, 8), target_modules=["lstm"])),    # vectorize=True: step by step
    "bilstm_lm": (_BiLM, "tokens", dict(block=(4, 4), target_modules=["lstm", "head"])),
}


def _pair(name, T=3, **kw):
    make, shape, rkw = ZOO[name]
    torch.manual_seed(0)
    nets = [make().double() for _ in range(T)]               # float64: Adam amplifies rounding at ReLU kinks
    torch.manual_seed(1)                                     # the bank's initialization
    a = reparameterize(copy.deepcopy(nets), context=2, lam=2, p=1.0, verbose=False, vectorize=False, **rkw, **kw)
    torch.manual_seed(1)
    b = reparameterize(copy.deepcopy(nets), context=2, lam=2, p=1.0, verbose=False, vectorize=True, **rkw, **kw)
    xs = [torch.randint(0, 11, (3, 5)) if shape == "tokens" else torch.randn(*shape, dtype=torch.float64)
          for _ in range(T)]
    return a, b, xs


def _grads(muir):
    """Per task and name: the gradient (grouped tasks: the row of their stacked leaf)."""
    out = {"bank": muir.bank.H.grad.clone()}
    for g, members in zip(muir.task_groups, muir.group_members):
        for n, st in zip(g.names, g.stacks):
            for r, i in enumerate(members):
                out[(i, n)] = st.grad[r].clone()
    for i, t in enumerate(muir.tasks):
        for n, p in t.named_parameters():
            if p.requires_grad and p.grad is not None:
                out[(i, n)] = p.grad.clone()
    return out


def _close(a, b, **tol):
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], **tol, msg=lambda m: f"{k}: {m}")


@pytest.mark.parametrize("name", list(ZOO))
def test_group_equals_per_task_outputs_gradients_and_search(name):
    a, b, xs = _pair(name)
    assert a.task_groups == [] and b.group_members == [[0, 1, 2]]
    opt_a, opt_b = (torch.optim.Adam(m.param_groups(lr=1e-2)) for m in (a, b))
    for gen in range(2):
        a.begin_generation(opt_a), b.begin_generation(opt_b)
        assert torch.equal(a.candidates(), b.candidates())
        for _ in range(3):
            outs_a, outs_b = a(xs), b(xs)                     # per task / one vmap over the group
            _close(dict(enumerate(outs_a)), dict(enumerate(outs_b)), rtol=1e-9, atol=1e-10)
            for m, outs, opt in ((a, outs_a, opt_a), (b, outs_b, opt_b)):
                opt.zero_grad()
                sum(o.square().mean() for o in outs).backward()
            _close(_grads(a), _grads(b), rtol=1e-8, atol=1e-10)
            opt_a.step(), opt_b.step()
        assert torch.equal(a.end_generation(), b.end_generation())          # same search decisions
    for i in range(3):
        _close(a[i].state_dict(), b[i].state_dict(), rtol=1e-8, atol=1e-10)  # same keys, same values
        assert list(a[i].state_dict()) == list(b[i].state_dict())
    x = xs[0]
    for pa, pb in zip(export(a), export(b)):
        _close(pa.state_dict(), pb.state_dict(), rtol=1e-8, atol=1e-10)
        assert all(p.requires_grad for p in pb.parameters())
        torch.testing.assert_close(pa(x), pb(x), rtol=1e-8, atol=1e-10)
    assert list(a.state_dict()) == list(b.state_dict())                     # the groups add no keys


@pytest.mark.parametrize("train", [True, False])
def test_plain_bn_group_keeps_each_members_statistics(train):
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
            for _ in range(3)]
    with torch.no_grad():
        for i, n in enumerate(nets):
            n[1].running_mean.fill_(i), n[1].running_var.fill_(i + 1)
    ref = copy.deepcopy(nets)
    group = vectorize(nets)
    for m in nets + ref:
        m.train(train)
    x = torch.randn(3, 5, 2, 4, 4)
    out = group(x)
    for i, r in enumerate(ref):
        torch.testing.assert_close(out[i], r(x[i]))
        torch.testing.assert_close(nets[i].state_dict(), r.state_dict())
    assert int(nets[2][1].num_batches_tracked) == (1 if train else 0)
    assert float(nets[2][1].running_var.mean()) != pytest.approx(float(nets[0][1].running_var.mean()))


def test_member_call_trains_the_stack_and_load_state_dict_round_trips():
    a, b, xs = _pair("mlp")
    b[1](xs[1]).sum().backward()                             # a member on its own: grads reach its stack row
    g = b.task_groups[0]
    grads = [st.grad for n, st in zip(g.names, g.stacks) if n != "generator.scores"]   # Eq. 5: no score grads
    assert all(g is not None and g[1].abs().sum() > 0 and g[0].abs().sum() == 0 for g in grads)
    sd = copy.deepcopy(a[2].state_dict())
    b[2].load_state_dict(sd)                                 # writes through into the stacked leaves
    torch.testing.assert_close(b([xs[0]] * 3)[2], a[2](xs[0]))
    c = copy.deepcopy(b)                                     # the views are rebuilt lazily after a copy
    torch.testing.assert_close(c(xs)[1], b(xs)[1])
    with torch.no_grad():
        c.task_groups[0].stacks[0].zero_()
    assert not torch.equal(c(xs)[1], b(xs)[1])


def test_engine_trains_a_group_like_the_per_task_path():
    a, b, xs = _pair("mlp")
    ys = [torch.randn(5, 2, dtype=torch.float64) for _ in xs]
    cfg = TrainConfig(steps=5, batch_size=5, multitask="sum", progress="off", log_every=0, checkpoint_every=0,
                      optim={"name": "adam", "lr": 1e-2}, schedule={"name": "constant"}, ema={"enabled": False})
    for m in (a, b):
        tasks = [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x))
                 for i, (x, y) in enumerate(zip(xs, ys))]
        Trainer(m, tasks, cfg, param_groups=m.param_groups(lr=1e-2)).fit()
    for i in range(3):
        _close(a[i].state_dict(), b[i].state_dict(), rtol=1e-8, atol=1e-10)


def test_plain_models_vectorize_and_refuse_what_they_cannot():
    torch.manual_seed(0)
    nets = [nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)) for _ in range(4)]
    ref = copy.deepcopy(nets)
    group = vectorize(nets)
    x = torch.randn(4, 6, 3)
    out = group(x)
    out.square().sum().backward()
    for i, r in enumerate(ref):
        torch.testing.assert_close(out[i], r(x[i]))
        r(x[i]).square().sum().backward()
        torch.testing.assert_close(group.stacks[0].grad[i], r[0].weight.grad)
    assert set(group.state_dict()) == {f"stack{k}" for k in range(4)}
    with pytest.raises(Exception, match="different architecture"):
        vectorize([nn.Linear(3, 4), nn.Linear(3, 5)])
    with pytest.raises(Exception, match="momentum=None"):
        vectorize([nn.BatchNorm1d(3, momentum=None), nn.BatchNorm1d(3, momentum=None)])
    with pytest.raises(Exception, match="InstanceNorm1d keeps running statistics and is not a BatchNorm"):
        vectorize([nn.InstanceNorm1d(3, track_running_stats=True) for _ in range(2)])
    odd = [nn.Linear(3, 3) for _ in range(2)]
    for m in odd:
        m.register_buffer("ema", torch.zeros(3))
    with pytest.raises(Exception, match="floating-point buffers other than BatchNorm"):
        vectorize(odd)

    def bn(momentum=0.1):
        return [nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, momentum=momentum), nn.Linear(4, 4), nn.Linear(4, 1))
                for _ in range(2)]
    assert reparameterize(bn(), block=(4, 4), verbose=False).group_members == [[0, 1]]    # BN models group
    assert reparameterize(bn(None), block=(4, 4), verbose=False).task_groups == []         # auto: on their own
    with pytest.raises(Exception, match="cannot be vectorized"):
        reparameterize(bn(None), block=(4, 4), verbose=False, vectorize=True)
    seq = reparameterize([_Seq(), _Seq()], block=(8, 8), target_modules=["lstm"], verbose=False)
    assert seq.task_groups == [] and len(seq([torch.randn(2, 4, 5)] * 2)) == 2   # auto: LSTMs stay per task
    gru = [nn.Sequential(nn.GRU(3, 4)) for _ in range(2)]
    with pytest.raises(Exception, match="it has a GRU"):
        vectorize(gru)
    with pytest.raises(Exception, match="proj_size"):
        vectorize([nn.LSTM(3, 4, proj_size=2) for _ in range(2)])
