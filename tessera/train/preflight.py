"""Before training: do the labels, the model's outputs, the loss and the metrics fit together?

:func:`check_tasks` runs the model on the first two samples of each task (no gradient, eval mode, the
RNG state untouched) and computes the loss and every metric there, so that ``loss: mse`` with class
labels, ``num_classes: 3`` on a 10-class dataset or ``metrics: [auc]`` on 10 classes fail at once with
one line, not with a traceback after all the training.

>>> import torch
>>> from torch import nn
>>> from tessera.train import Task
>>> x, y = torch.randn(8, 4), torch.arange(8) % 5
>>> check_tasks(nn.Linear(4, 3), [Task("toy", train=(x, y))])
Traceback (most recent call last):
...
tessera.errors.ConfigError: task 'toy': labels go up to 4 but the model has 3 outputs; set num_classes to at least 5 (or leave it out to infer it)
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..errors import ConfigError, TesseraError
from .task import Task, TensorData

__all__ = ["check_tasks"]

_CLASS_LOSSES = ("cross_entropy",)
_CLASS_METRICS = ("accuracy", "error", "perplexity")


def _first(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _shape(t: Any) -> Any:
    return tuple(t.shape) if torch.is_tensor(t) else type(t).__name__


def _check_labels(task: Task, y: torch.Tensor, out: torch.Tensor) -> None:
    loss = task.loss if isinstance(task.loss, str) else None
    names = [m.name for m in task.metric_objs]
    classes = out.shape[-1] if out.dim() >= 2 else 1
    integer = not (y.is_floating_point() or y.dtype == torch.bool or y.is_complex())
    if loss in _CLASS_LOSSES and not integer:
        raise ConfigError(f"task {task.name!r}: loss {loss} needs integer class labels, the data has "
                          f"{str(y.dtype).replace('torch.', '')} labels; use loss: mse (or bce) for real-valued targets")
    if integer and len(y) and (loss in _CLASS_LOSSES or any(n in _CLASS_METRICS for n in names)):
        if int(y.min()) < 0:
            raise ConfigError(f"task {task.name!r}: labels include {int(y.min())}; class labels must be 0..C-1")
        if int(y.max()) >= classes:
            raise ConfigError(f"task {task.name!r}: labels go up to {int(y.max())} but the model has {classes} "
                              f"outputs; set num_classes to at least {int(y.max()) + 1} (or leave it out to infer it)")
    if "auc" in names:
        if len(y) and not bool(((y == 0) | (y == 1)).all()):
            raise ConfigError(f"task {task.name!r}: metric auc needs binary 0/1 labels, the data has others; "
                              "use accuracy for more than two classes")
        if out.dim() >= 2 and out.shape[-1] not in (1, 2):
            raise ConfigError(f"task {task.name!r}: metric auc needs 1 or 2 outputs per sample, the model has "
                              f"{out.shape[-1]}; use accuracy for more than two classes")


def check_tasks(model: nn.Module, tasks: Sequence[Task], device: torch.device | str | None = None) -> None:
    """Raise :class:`ConfigError` naming the task when labels, outputs, loss or metrics do not fit."""
    dev = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    for task in tasks:
        for split, data in (("training", task.train_data), ("evaluation", task.eval_data)):
            if data is not None and len(data) == 0:
                raise ConfigError(f"task {task.name!r}: the {split} data is empty; check the dataset and limit_* keys")
        data = task.train_data if task.train_data is not None else task.eval_data
        if data is None or hasattr(task.forward, "state_dict"):   # a stateful forward must not run here
            continue
        x, y = data[torch.arange(min(2, len(data)))]
        x, y = _to(x, dev), _to(y, dev)
        was = model.training
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                model.eval()
                out = task.outputs(model, x)
        except TesseraError:
            raise
        except Exception as e:
            raise ConfigError(f"task {task.name!r}: the model cannot run on its inputs of shape {_shape(x)} "
                              f"({_first(e)}); check model.kwargs against the dataset") from None
        finally:
            model.train(was)
        if torch.is_tensor(y) and torch.is_tensor(out):
            full_y = data.y if isinstance(data, TensorData) else y
            _check_labels(task, full_y, out)
        what = [("loss", task.loss if isinstance(task.loss, str) else "(custom)", task.loss_fn)]
        what += [("metric", m.name, m.fn) for m in task.metric_objs]
        for kind, name, fn in what:
            try:
                with torch.no_grad():
                    fn(out, y)
            except Exception as e:
                hint = ("for class labels use loss: cross_entropy" if name in ("mse", "bce", "mae", "rmse")
                        else "choose a loss / metric that fits these outputs and labels")
                raise ConfigError(f"task {task.name!r}: {kind} {name} does not fit outputs {_shape(out)} and labels "
                                  f"{_shape(y)} ({_first(e)}); {hint}") from None


def _to(x: Any, dev: torch.device) -> Any:
    if torch.is_tensor(x):
        return x.to(dev)
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, dev) for v in x)
    return x
