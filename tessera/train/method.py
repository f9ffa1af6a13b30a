"""The engine's plug-in protocol: what a training method (or a callback) adds to :class:`Trainer`.

The engine (:class:`~tessera.train.Trainer`) owns the step loop, the optimizers and their parameter
groups, LR schedules, gradient clipping, EMA, the gradient all-reduce under ``torchrun``, atomic
checkpoints with exact resume, progress and ``metrics.jsonl``. A **method** owns what is its own:

* ``optimizers(trainer) -> {name: Optim}``: which parameters each optimizer moves (default: one
  optimizer ``"main"`` over every trainable parameter of the model and the task heads);
* ``training_step(trainer, step)``: the losses of one step. Return one loss tensor (it updates
  ``"main"``), or *yield* ``(optimizer name, loss)`` pairs: the engine backpropagates each loss into
  that optimizer's parameters only and steps it before the method computes the next loss -- so an
  alternating update (ADDA's discriminator, then the target against the *updated* discriminator) is
  a generator of two pairs;
* hooks at step boundaries and state that survives a resume (see :class:`Callback`).

A **callback** has the same hooks and state but computes no loss (MUiR's generations, schedules of
frozen parts, early stopping). Methods and callbacks never call ``optimizer.step()`` themselves.

A method written against the protocol, two optimizers updated alternately each step:

>>> import torch
>>> from torch import nn
>>> from tessera.train import Trainer, TrainConfig, Task, Method, Optim
>>> class TwoPlayer(Method):
...     def __init__(self, a, b):
...         self.a, self.b = a, b
...     def optimizers(self, trainer):
...         return {"a": Optim(self.a.parameters()), "b": Optim(self.b.parameters(), lr=0.05)}
...     def training_step(self, trainer, step):
...         x, y = trainer.batch(0)                          # this rank's shard of task 0's batch
...         loss_a = (self.a(x) - y).square().mean()
...         trainer.record("a", loss_a)
...         yield "a", loss_a                                 # engine steps "a" here
...         loss_b = (self.b(x) - self.a(x).detach()).square().mean()
...         trainer.record("b", loss_b)
...         yield "b", loss_b
>>> _ = torch.manual_seed(0)
>>> a, b = nn.Linear(2, 1), nn.Linear(2, 1)
>>> x = torch.randn(64, 2); y = x.sum(1, keepdim=True)
>>> cfg = TrainConfig(steps=300, batch_size=16, progress="off", log_every=0, checkpoint_every=0,
...                   optim={"name": "sgd", "lr": 0.1, "momentum": 0.0}, schedule={"name": "constant"},
...                   ema={"enabled": False})
>>> tr = Trainer(nn.ModuleDict({"a": a, "b": b}), [Task("fit", train=(x, y), eval=None)], cfg,
...              method=TwoPlayer(a, b))
>>> _ = tr.fit()
>>> bool((a.weight - 1).abs().max() < 1e-2), bool((b.weight - a.weight).abs().max() < 1e-2)
(True, True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

import torch
from torch import Tensor

from .config import OptimConfig, ScheduleConfig

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["Optim", "Callback", "Method", "Supervised", "StepOutput"]

StepOutput = Tensor | Iterable[tuple[str, Tensor]]
"""What ``training_step`` returns: one loss ("main"), or ``(optimizer name, loss)`` pairs in order."""


@dataclass
class Optim:
    """One named optimizer of a method: its parameters and (optionally) its own settings.

    Args:
        params: tensors, or param-group dicts (a group may set its own ``lr`` / ``weight_decay``).
        config: optimizer settings (default: the run's ``train.optim``); ``lr`` overrides its lr.
        schedule: LR schedule (default: the run's ``train.schedule``), over the run's total steps.
        clip_grad: gradient-norm clipping of this optimizer's parameters (default: ``train.clip_grad``).
    """

    params: Iterable[Any]
    config: OptimConfig | Mapping[str, Any] | None = None
    schedule: ScheduleConfig | Mapping[str, Any] | None = None
    clip_grad: float | None = None
    lr: float | None = None
    groups: list[Any] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.groups = list(self.params)


class Callback:
    """Hooks the engine calls (all optional); ``state_dict`` is saved in every checkpoint.

    Order within a step: ``on_step_start`` -> the method's updates -> EMA -> ``on_step_end``. Every
    hook's ``step`` is ``trainer.step`` at the time of the call: in ``on_step_start`` the 0-based index
    of the step about to run (= steps done so far), in ``on_step_end`` the number of steps done.
    A hook may change parameters in place, reset optimizer state, or set ``trainer.should_stop``.
    Any object with some of these methods works as a callback (subclassing is optional).
    """

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Once per ``fit``/``run``, after a resume was loaded."""

    def on_step_start(self, trainer: "Trainer", step: int) -> None:
        """Before the updates of 0-based step ``step``."""

    def on_step_end(self, trainer: "Trainer", step: int, logs: dict[str, Any]) -> None:
        """After a step; ``step`` steps are done. ``logs`` holds the recorded values and the LRs."""

    def on_eval_end(self, trainer: "Trainer", step: int, metrics: dict[str, dict[str, float]]) -> None:
        """After an evaluation at ``trainer.step == step``."""

    def on_fit_end(self, trainer: "Trainer", final: dict[str, Any]) -> None:
        """After ``fit`` wrote final.json."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors and JSON values to checkpoint (nested dicts / lists allowed). Called on every rank at
        each checkpoint (so it may use collectives); rank 0's result is written."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


class Method(Callback):
    """A training method: its optimizers and the losses of one step. The default is :class:`Supervised`."""

    def optimizers(self, trainer: "Trainer") -> dict[str, Optim]:
        """Named optimizers; default ``{"main": every trainable parameter of model + heads}``."""
        return {"main": Optim(trainer.default_param_groups())}

    def training_step(self, trainer: "Trainer", step: int) -> StepOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class Supervised(Method):
    """The tasks' own losses: one task per step in turn (``multitask: round_robin``) or every task's
    loss, weighted by ``Task.weight``, summed (``multitask: sum``). Records each task's loss."""

    def training_step(self, trainer: "Trainer", step: int) -> Tensor:
        total: Tensor | None = None
        for ti, k in trainer.active_tasks(step):
            task = trainer.tasks[ti]
            x, y = trainer.batch(ti, k)
            loss = task.loss_fn(task.outputs(trainer.model, x), y)
            trainer.record(task.name, loss)
            term = loss * task.weight if task.weight != 1.0 else loss
            total = term if total is None else total + term
        assert total is not None
        return total


def updates_of(out: Any) -> Iterator[tuple[str, Tensor]]:
    """Normalize a ``training_step`` result into ``(optimizer name, loss)`` pairs (lazily)."""
    if isinstance(out, Tensor):
        yield "main", out
        return
    if isinstance(out, Mapping):
        yield from out.items()
        return
    for item in out:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                and isinstance(item[1], Tensor)):
            from ..errors import TrainingError
            raise TrainingError(f"training_step yielded {type(item).__name__}; yield (optimizer name, loss tensor) "
                                f"pairs or return one loss tensor")
        yield item
