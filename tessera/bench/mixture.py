"""``tessera bench mixture-overhead``: template mixtures vs a plain isometric network, side by side.

Rows (ratio = candidate / baseline, same process, interleaved rounds, medians):

* training step (forward, cross-entropy, backward, RMSprop step) of a MixtureNet with K = 4 and
  K = 16 templates over a plain :class:`tessera.nn.IsometricNet` with the same L layers
  (target: ratio <= 1.05);
* several tasks of one MixtureNet (K = 4), one train step over all of them: ONE batched call
  (:meth:`~tessera.mixture.MixtureNet.forward_tasks`) over the per-task loop (one forward per task,
  losses summed, one backward and step), for the isometric conv network and for a residual MLP
  block (LayerNorm, d = 64, L = 8); no target: a measurement of when batching pays;
* inference of a exported MixtureNet task (one-hot signature: layers share template modules;
  learned mixture: every layer materialized) over the plain network's inference (target <= 1.03).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..results import Report
from . import RunOptions
from ..threads import intra_op_threads
from .timing import compare

__all__ = ["run"]


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-4, alpha=0.9, eps=1e-3, momentum=0.9)
    model.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def _infer(model: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    model.eval()

    def fwd() -> None:
        with torch.no_grad():
            model(x)
    return fwd


@intra_op_threads(1)  # small ops: one thread is as fast, and far faster on a busy CPU
def run(opts: RunOptions, *, _smoke: bool = False) -> dict[str, Any]:
    """Time mixture training steps and exported inference against the plain IsometricNet."""
    from ..mixture import MixtureNet, export
    from ..nn import IsometricNet

    quick = opts.budget == "quick"
    cfg = dict(depth=16, channels=24, head_channels=(128, 256), patch=2, image=28,
               batch=32 if quick else 64, eval_batch=128 if quick else 256, templates=[4, 16], tasks=4 if quick else 8,
               task_batches=[8] if quick else [8, 64], mlp_width=64, mlp_depth=8,
               rounds=7 if quick else 21, warmup=2 if quick else 3, threads=torch.get_num_threads())
    if _smoke:  # tiny sizes for the test-suite
        cfg.update(depth=2, channels=8, head_channels=(16, 16), batch=4, eval_batch=4, rounds=1, warmup=0, tasks=2,
                   task_batches=[2], mlp_width=8, mlp_depth=2)
    rep = Report("mixture-overhead", config=cfg, device="cpu")
    torch.manual_seed(0)
    arch = dict(channels=cfg["channels"], head_channels=cfg["head_channels"], patch=cfg["patch"])
    L = cfg["depth"]
    x = torch.rand(cfg["batch"], 1, cfg["image"], cfg["image"])
    y = torch.randint(0, 10, (cfg["batch"],))

    plain = IsometricNet(10, depth=L, **arch)
    mixtures = {k: MixtureNet.from_isometric(10, num_templates=k, depth=L, **arch) for k in cfg["templates"]}
    fns = {"plain": _train_step(plain, x, y)}
    fns.update({f"K={k}": _train_step(m, x, y) for k, m in mixtures.items()})
    t = compare(fns, warmup=cfg["warmup"], rounds=cfg["rounds"])
    for k in cfg["templates"]:
        rep.add_bench_row(setting=f"train step, L={L}, batch {cfg['batch']}", method=f"mixture K={k}",
                          metric="seconds", baseline_s=t["plain"], candidate_s=t[f"K={k}"], target_ratio=1.05)

    xe = torch.rand(cfg["eval_batch"], 1, cfg["image"], cfg["image"])
    seq = MixtureNet.from_isometric(10, num_templates=4, depth=L, signature="sequential", **arch)
    exported = {"one-hot (sequential, shared modules)": export(seq.eval()),
                 "learned (per-layer weights)": export(mixtures[4].eval())}
    fns = {"plain": _infer(plain, xe)}
    fns.update({name: _infer(m, xe) for name, m in exported.items()})
    t = compare(fns, warmup=cfg["warmup"], rounds=cfg["rounds"])
    for name in exported:
        rep.add_bench_row(setting=f"inference, L={L}, batch {cfg['eval_batch']}", method=f"exported K=4 {name}",
                          metric="seconds", baseline_s=t["plain"], candidate_s=t[name], target_ratio=1.03)

    n_tasks, d = cfg["tasks"], cfg["mlp_width"]
    names = {f"t{i}": 10 for i in range(n_tasks)}
    nets = {"isometric conv": (MixtureNet.from_isometric(names, num_templates=4, depth=L, **arch),
                               (1, cfg["image"], cfg["image"])),
            f"residual MLP d={d}": (MixtureNet(lambda: ResidualMLP(d), num_templates=4, depth=cfg["mlp_depth"],
                                               tasks=names, embed_dim=d, input_adapter=nn.Linear(20, d)), (20,))}
    for arch_name, (multi, shape) in nets.items():
        for b in cfg["task_batches"][:1] if arch_name == "isometric conv" else cfg["task_batches"]:  # conv: slow
            xs = {t: torch.rand(b, *shape) for t in multi.tasks}
            ys = {t: torch.randint(0, 10, (b,)) for t in multi.tasks}
            fns = {"loop": _multi_step(multi, xs, ys, batched=False),
                   "batched": _multi_step(multi, xs, ys, batched=True)}
            t = compare(fns, warmup=cfg["warmup"], rounds=cfg["rounds"])
            depth = L if arch_name == "isometric conv" else cfg["mlp_depth"]
            rep.add_bench_row(setting=f"{n_tasks} tasks train step, {arch_name}, L={depth}, batch {b} per task",
                              method="forward_tasks vs per-task loop", metric="seconds", baseline_s=t["loop"],
                              candidate_s=t["batched"])
    return rep.write(opts.json)


class ResidualMLP(nn.Module):
    """``x + fc2(relu(fc1(norm(x))))``: a transformer-style MLP block (the batching row's second block)."""

    def __init__(self, d: int):
        super().__init__()
        self.norm, self.fc1, self.fc2 = nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # (N, d) -> (N, d)
        return x + self.fc2(torch.relu(self.fc1(self.norm(x))))


def _multi_step(net: nn.Module, xs: dict, ys: dict, batched: bool) -> Callable[[], None]:
    opt = torch.optim.RMSprop(net.parameters(), lr=1e-4, alpha=0.9, eps=1e-3, momentum=0.9)
    net.train()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        outs = net.forward_tasks(xs) if batched else {t: net(x, task=t) for t, x in xs.items()}
        sum(F.cross_entropy(o, ys[t]) for t, o in outs.items()).backward()
        opt.step()
    return step
