"""Training schemes (Sec. 3.4) on the one engine: joint (alternating minibatches between tasks) and
incremental (later networks against frozen auxiliary heads).

Each task is a :class:`Member`: its own extractor and head, its training data, and optionally private
auxiliary objectives (e.g. its own rotation head, as in the paper's upper bound). Shared auxiliary
objectives (:class:`~tessera.compat.aux.DCC`, :class:`~tessera.compat.aux.RP`) are passed separately;
their heads receive gradients from every task (joint) or are frozen bit-exactly (incremental).

:class:`JointTraining` is the scheme as a :class:`tessera.train.Method`: the members are the run's
:class:`~tessera.train.Task` objects (an unlabelled member has ``y=None``), step ``s`` trains member
``s % T`` on its ``s // T``-th minibatch (``multitask: sum`` instead sums every member's loss each
step), and one optimizer holds every trainable parameter. Run length, batch size, optimizer and
schedule are the engine's :class:`~tessera.train.TrainConfig`; ``steps`` counts global steps, so
``T`` members trained jointly for ``n`` minibatches each take ``steps = n * T``.

>>> import torch
>>> from torch import nn
>>> from tessera.train import TrainConfig
>>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
>>> m = Member("toy", nn.Linear(4, 3), nn.Linear(3, 2), x, y)
>>> res = train_joint([m], [], TrainConfig(steps=3, batch_size=8, progress="off", ema={"enabled": False}))
>>> res["step"], sorted(res["losses"]), res["trained_params"]
(3, ['toy', 'toy.target'], 23)
"""
from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import to_dict
from ..errors import ConfigError
from ..train import Method, Task, Trainer, TrainConfig
from .aux import AuxObjective
from .bn import frozen

__all__ = ["Member", "JointTraining", "member_losses", "train_joint", "train_incremental"]

Tensor = torch.Tensor


@dataclass
class Member:
    """One target task: extractor, head, training images ``x`` (N, C, H, W) and labels ``y`` (N,).

    ``classes``: class names (label i is ``classes[i]``); ``own_aux``: auxiliary objectives private to
    this member. ``y=None`` makes a self-supervised-only member (no target loss). ``aux_task``: this
    member's task index for shared objectives (DCC's label maps); default its position in the list.
    """

    name: str
    extractor: nn.Module
    head: nn.Module | None
    x: Tensor
    y: Tensor | None
    classes: Sequence[str] | None = None
    own_aux: list[AuxObjective] = field(default_factory=list)
    aux_task: int | None = None


def member_losses(m: Member, aux: Sequence[AuxObjective], xb: Tensor, yb: Tensor | None, task: int,
                  generator: Callable[[int], torch.Generator] | None = None) -> dict[str, Tensor]:
    """Eq. 1 / Eq. 2 for one minibatch: target loss plus each (shared, then own) auxiliary loss.

    ``generator(i)``: the generator of the ``i``-th auxiliary objective's random draws (shared ones
    first, then own ones).
    """
    feats = m.extractor(xb)  # (B, *feature_shape)
    out: dict[str, Tensor] = {}
    if m.head is not None and yb is not None:
        out["target"] = F.cross_entropy(m.head(feats), yb)
    gen = generator or (lambda i: None)
    for i, a in enumerate(aux):
        out[a.name] = a.weight * a.loss(m.extractor, xb, yb, feats, task, generator=gen(i))
    for i, a in enumerate(m.own_aux):
        out[f"own_{a.name}"] = a.weight * a.loss(m.extractor, xb, yb, feats, 0, generator=gen(len(aux) + i))
    return out


def _net(members: Sequence[Member], aux: Sequence[AuxObjective]) -> nn.ModuleDict:
    """Every module of the run in one tree (shared modules appear under each member that uses them)."""
    mem = nn.ModuleDict()
    for m in members:
        parts = nn.ModuleDict({"extractor": m.extractor})
        if m.head is not None:
            parts["head"] = m.head
        if m.own_aux:
            parts["own_aux"] = nn.ModuleList(m.own_aux)
        mem[m.name] = parts
    return nn.ModuleDict({"members": mem, "aux": nn.ModuleList(aux)})


class JointTraining(Method):
    """Sec. 3.4's joint scheme: members take turns (round robin), each step adds the shared and own
    auxiliary losses to the member's target loss. Random draws of the auxiliary objectives come from
    ``trainer.generator`` (per step, member, objective and rank), so a resumed run repeats them."""

    def __init__(self, members: Sequence[Member], aux: Sequence[AuxObjective]):
        self.members, self.aux = list(members), list(aux)
        self.last: dict[str, float] = {}

    def training_step(self, trainer: Trainer, step: int) -> Tensor:
        total: Tensor | None = None
        for ti, k in trainer.active_tasks(step):
            m = self.members[ti]
            x, y = trainer.batch(ti, k)
            gen = lambda i, _t=ti: trainer.generator(_t, i, trainer.rank)  # noqa: E731
            losses = member_losses(m, self.aux, x, y, ti if m.aux_task is None else m.aux_task, gen)
            loss = sum(losses.values())
            for name, v in losses.items():
                trainer.record(f"{m.name}.{name}", v)
            trainer.record(m.name, loss)
            total = loss if total is None else total + loss
        assert total is not None
        return total

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        self.last.update(logs["values"])          # each member's latest losses

    def state_dict(self) -> dict[str, Any]:
        return {"last": dict(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = dict(state["last"])


def train_joint(members: Sequence[Member], aux: Sequence[AuxObjective], config: TrainConfig, *,
                out_dir: str | Path | None = None, callbacks: Sequence[Any] = (),
                device: str | torch.device | None = None) -> dict[str, Any]:
    """Joint training on the engine: ``config.steps`` global steps, step ``s`` on member ``s % T``.

    One optimizer (``config.optim`` / ``config.schedule``) holds every trainable parameter
    (extractors, heads, shared and own auxiliary heads); frozen ones (``requires_grad=False``, e.g.
    inside :func:`~tessera.compat.bn.frozen`) are left out. EMA must be off. ``out_dir``: the run's directory
    (checkpoints every ``config.checkpoint_every`` steps, ``metrics.jsonl``); a rerun with the same
    ``out_dir`` resumes from its checkpoint. Returns the engine's final dict plus ``losses`` (each
    member's latest recorded losses) and ``trained_params`` (scalars the optimizer moved).
    """
    if not members:
        raise ConfigError("train_joint needs at least one Member")
    if config.ema.enabled:
        raise ConfigError("compatible components are measured with their trained weights, not an EMA of them; "
                          "set ema={'enabled': False} in the TrainConfig")
    names = [m.name for m in members]
    tasks = [Task(m.name, train=(m.x, m.y), eval=None) for m in members]
    method = JointTraining(members, aux)
    run_config = {"train": to_dict(config), "scheme": "joint", "members": names, "aux": [a.name for a in aux]}
    trainer = Trainer(_net(members, aux), tasks, config, out_dir, method=method, callbacks=callbacks,
                      run_config=run_config, device=device)
    final = trainer.fit(resume=out_dir is not None)
    params = {id(p): p for o in trainer.opts.values() for p in o.params}
    return {**final, "losses": method.last, "trained_params": sum(p.numel() for p in params.values())}


def train_incremental(members: Sequence[Member], aux: Sequence[AuxObjective], config: TrainConfig, *,
                      train_aux_first: bool = True, out_dir: str | Path | None = None,
                      device: str | torch.device | None = None) -> list[dict[str, Any]]:
    """Incremental training: member 0 trains with the auxiliary heads (unless ``train_aux_first=False``:
    they are already trained); every later member trains alone with those heads frozen bit-exactly.

    Consecutive engine runs of ``config.steps`` steps each (member ``i`` with seed ``31 * seed + i``);
    ``out_dir / "member<i>"`` is member ``i``'s run directory. Returns each run's :func:`train_joint` dict.
    """
    out = []
    for i, m in enumerate(members):
        with ExitStack() as stack:
            if i > 0 or not train_aux_first:
                stack.enter_context(frozen(*aux))
            m = replace(m, aux_task=i if m.aux_task is None else m.aux_task)
            out.append(train_joint([m], aux, replace(config, seed=config.seed * 31 + i),
                                   out_dir=None if out_dir is None else Path(out_dir) / f"member{i}", device=device))
    return out
