"""Several MixtureNet tasks in one batched call equal the per-task calls: outputs, gradients, BN statistics,
and a whole engine run (issue 15)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tessera.mixture import MixtureNet, TaskSplit, train_tasks
from tessera.mixture.batched import can_batch

T_NAMES = {"a": 3, "b": 5, "c": 4}


class _MLPBlock(nn.Module):            # LayerNorm, no running statistics
    def __init__(self, d: int = 12):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


class _BN1dBlock(nn.Module):           # BatchNorm1d on (N, C): its statistics are per task
    def __init__(self, d: int = 12):
        super().__init__()
        self.fc, self.bn = nn.Linear(d, d), nn.BatchNorm1d(d, momentum=0.3)

    def forward(self, x):
        return torch.tanh(self.bn(self.fc(x)))


def _iso(**kw):
    return MixtureNet.from_isometric(T_NAMES, num_templates=3, depth=3, channels=8, patch=4, head_channels=(8, 16),
                                     dropout=0.0, **kw), (1, 8, 8)


def _vec(block, **kw):
    return MixtureNet(block, num_templates=3, depth=3, tasks=T_NAMES, embed_dim=12,
                      input_adapter=nn.Sequential(nn.Linear(6, 12), nn.BatchNorm1d(12)), **kw), (6,)


ZOO = {
    "inverted_residual": lambda: _iso(),
    "inverted_residual_patch_bn": lambda: _iso(bn="patch"),
    "inverted_residual_mixed_bn_concat": lambda: _iso(bn="mixed", block_input="concat"),
    "basic_residual_nchw": lambda: _iso(block="basic_residual", channels_last=False),
    "mlp_layernorm": lambda: _vec(_MLPBlock, seed=3),
    "bn1d": lambda: _vec(_BN1dBlock, block_input="add"),
}


def _grads(net):
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch", sorted(ZOO))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batched_equals_per_task(arch, mode):
    torch.manual_seed(0)
    net, shape = ZOO[arch]()
    with torch.no_grad():                         # distinct statistics per task, so a mix-up shows
        for i, t in enumerate(T_NAMES):
            getattr(net.stats, t).add_(0.1 * (i + 1)).abs_()
    net.train(mode == "train")
    ref = copy.deepcopy(net)
    xs = {t: torch.randn(6, *shape) for t in T_NAMES}
    assert can_batch(net, xs) is None
    net.set_task("c")
    out = net.forward_tasks(xs)
    want = {t: ref(xs[t], task=t) for t in T_NAMES}
    assert net.task == "c"                                             # the active task is kept
    for t in T_NAMES:
        torch.testing.assert_close(out[t], want[t], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(getattr(net.stats, t), getattr(ref.stats, t), atol=1e-5, rtol=1e-4)
    for (n, b), (_, rb) in zip(net.named_buffers(), ref.named_buffers()):
        torch.testing.assert_close(b, rb, msg=lambda m: f"buffer {n}: {m}")
    if mode == "train":
        sum(o.square().mean() * (i + 1) for i, o in enumerate(out.values())).backward()
        sum(o.square().mean() * (i + 1) for i, o in enumerate(want.values())).backward()
        g, rg = _grads(net), _grads(ref)
        assert g.keys() == rg.keys() and len(g) > 4
        for n in g:
            torch.testing.assert_close(g[n], rg[n], atol=1e-5, rtol=1e-4, msg=lambda m: f"grad {n}: {m}")


def test_running_statistics_move_in_training():
    torch.manual_seed(0)
    net, shape = ZOO["bn1d"]()
    before = {t: getattr(net.stats, t).clone() for t in T_NAMES}
    net.train().forward_tasks({t: torch.randn(6, *shape) + i for i, t in enumerate(T_NAMES)})
    moved = [float((getattr(net.stats, t) - before[t]).abs().max()) for t in T_NAMES]
    assert min(moved) > 0.05, moved
    assert int(net.blocks[0].bn.num_batches_tracked) == 3          # one batch per task, as the loop counts


def test_unequal_shapes_fall_back_to_the_loop():
    torch.manual_seed(0)
    net, shape = ZOO["inverted_residual"]()
    net.eval()
    xs = {"a": torch.randn(2, *shape), "b": torch.randn(5, *shape)}
    assert "one shape" in can_batch(net, xs)
    out = net.forward_tasks(xs)
    torch.testing.assert_close(out["b"], net(xs["b"], task="b"))


def test_unknown_or_repeated_task_is_refused():
    net, shape = ZOO["mlp_layernorm"]()
    with pytest.raises(Exception, match="unknown task 'z'"):
        net.forward_tasks({"a": torch.randn(2, *shape), "z": torch.randn(2, *shape)})


def test_batched_engine_run_equals_summed_per_task_run():
    """train_tasks(batched=True) == the engine's summed per-task loss, step for step (same data order)."""
    g = torch.Generator().manual_seed(0)
    data = {t: TaskSplit(torch.rand(48, 1, 8, 8, generator=g), torch.randint(0, n, (48,), generator=g),
                         torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, n, (16,), generator=g))
            for t, n in T_NAMES.items()}
    torch.manual_seed(1)
    net, _ = ZOO["inverted_residual_patch_bn"]()
    ref, init = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    res = train_tasks(net, data, steps=5, batch=8, ema=0, batched=True)
    # the reference: the same engine, default method, tasks summed each step (Supervised + multitask="sum")
    from tessera.mixture import training as tr
    orig = tr.TrainConfig

    def summed(**kw):
        kw["multitask"] = "sum"
        return orig(**kw)
    tr.TrainConfig = summed
    try:
        ref_res = train_tasks(ref, data, steps=5, batch=8, ema=0)
    finally:
        tr.TrainConfig = orig
    for (n, p), (_, q) in zip(net.state_dict().items(), ref.state_dict().items()):
        torch.testing.assert_close(p, q, atol=2e-5, rtol=1e-4, msg=lambda m: f"{n}: {m}")
    assert res["acc"] == pytest.approx(ref_res["acc"])
    moved = [n for n, p in net.state_dict().items() if not torch.equal(p, init[n])]
    assert any(n.startswith("stats.c") for n in moved) and any(n.startswith("mixture.b") for n in moved)


def test_batched_needs_a_mixture_net():
    data = {"a": TaskSplit(torch.rand(8, 3), torch.zeros(8, dtype=torch.long), torch.rand(4, 3),
                           torch.zeros(4, dtype=torch.long))}
    with pytest.raises(Exception, match="forward_tasks"):
        train_tasks(nn.Linear(3, 2), data, steps=1, batch=4, batched=True, model_takes_task=False)


def test_batched_method_refuses_a_task_head():
    from tessera.mixture.batched import BatchedTasks
    from tessera.train import Task, Trainer, TrainConfig
    net, shape = ZOO["mlp_layernorm"]()
    tasks = [Task(t, train=(torch.randn(8, *shape), torch.zeros(8, dtype=torch.long)), head=nn.Linear(T_NAMES[t], 2)
                  if t == "b" else None, forward=lambda m, x, t=t: m(x, task=t)) for t in T_NAMES]
    cfg = TrainConfig(steps=1, batch_size=4, multitask="sum", progress="off", log_every=0, checkpoint_every=0)
    with pytest.raises(Exception, match=r"tasks \['b'\] have a Task.head: drop it"):
        Trainer(net, tasks, cfg, method=BatchedTasks()).fit()


class _GatedBlock(nn.Module):          # takes a keyword argument, as attention blocks take masks
    def __init__(self, d: int = 12):
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x, gate: float = 1.0):
        return x + gate * torch.tanh(self.fc(x))


def test_block_keyword_arguments_reach_every_block_in_the_batched_call():
    torch.manual_seed(0)
    net, shape = _vec(_GatedBlock)
    net.eval()
    xs = {t: torch.randn(4, *shape) for t in T_NAMES}
    assert can_batch(net, xs) is None
    out = net.forward_tasks(xs, gate=0.25)
    for t, x in xs.items():
        torch.testing.assert_close(out[t], net(x, task=t, gate=0.25))
        assert not torch.allclose(out[t], net(x, task=t))             # the gate changes the output
