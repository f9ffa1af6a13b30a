"""A task is data + loss + metrics (+ an optional head, + an optional forward function).

Other capabilities (MUiR, template mixtures, compatibility, domain adaptation) build ``Task`` objects
in Python and hand them to :class:`~tessera.train.Trainer`; YAML is only one way to get there.

>>> x, y = torch.randn(20, 3), torch.randint(0, 2, (20,))
>>> t = Task("toy", train=(x, y), eval=(x, y), metrics=["accuracy", "loss"])
>>> len(t.train_data), t.loss_fn(torch.zeros(4, 2), y[:4]).item() > 0
(20, True)

Metrics are either *mean* metrics (per-element values, averaged over the whole evaluation set, then an
optional ``finalize`` such as sqrt or exp) or *global* metrics (computed once on all outputs, e.g. AUC).
Both are exact under sharded (DDP) evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import Registry

__all__ = ["Task", "Metric", "METRICS", "LOSSES", "TensorData", "as_data", "roc_auc", "get_metric", "get_loss"]

Tensor = torch.Tensor


class Indexable(Protocol):
    """Anything with ``len()`` whose ``[LongTensor]`` returns a batch ``(x, y)``."""

    def __len__(self) -> int: ...

    def __getitem__(self, idx: Tensor) -> tuple[Any, Tensor]: ...


class TensorData:
    """In-memory ``(x, y)`` tensors; ``data[idx]`` indexes both (much faster than a DataLoader on CPU).

    ``y=None`` holds unlabelled inputs (batches are ``(x, None)``).
    """

    def __init__(self, x: Any, y: Tensor | None):
        xs = x if isinstance(x, (tuple, list)) else (x,)
        n = len(y) if y is not None else len(xs[0])
        for xi in xs:
            if len(xi) != n:
                raise ConfigError(f"task data: x has {len(xi)} samples but y has {n}; pass matching tensors")
        self.x, self.y, self.n = x, y, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, idx: Tensor | slice) -> tuple[Any, Tensor | None]:
        """Samples ``idx`` of x and y: a copy for an index tensor (``index_select``, ~2x faster than ``t[idx]``
        on small batches), views for a slice."""
        y = _take(self.y, idx) if self.y is not None else None
        if isinstance(self.x, (tuple, list)):
            return type(self.x)(_take(xi, idx) for xi in self.x), y
        return _take(self.x, idx), y


def _take(t: Any, idx: Tensor | slice) -> Any:
    """``t[idx]``; rows by ``index_select`` when ``idx`` is a 1-d integer tensor."""
    if isinstance(idx, Tensor) and isinstance(t, Tensor) and idx.dim() == 1 \
            and idx.dtype in (torch.int64, torch.int32):
        return t.index_select(0, idx.to(t.device, non_blocking=True))
    return t[idx]


def as_data(d: Any) -> Indexable | None:
    if d is None:
        return None
    if isinstance(d, tuple) and len(d) == 2 and (isinstance(d[1], Tensor) or d[1] is None):
        return TensorData(*d)
    if isinstance(d, Tensor):
        return TensorData(d, None)
    if hasattr(d, "__len__") and hasattr(d, "__getitem__") and not isinstance(d, (list, tuple, str, bytes, dict)):
        return d
    raise ConfigError(f"task data must be an (x, y) tuple of tensors or an indexable dataset, got {type(d).__name__}")


# ----------------------------------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Metric:
    """``fn(outputs, targets)`` -> per-element values (kind="mean") or a scalar (kind="global").

    Per-element values are summed in float64 on the CPU, batch by batch (float32 on the device, since
    MPS has no float64).
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    kind: str = "mean"
    finalize: Callable[[float], float] | None = None
    higher_is_better: bool = True


def roc_auc(scores: Tensor, targets: Tensor) -> Tensor:
    """Area under the ROC curve of binary ``targets`` (ties get half credit; Mann-Whitney U).

    >>> roc_auc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])).item()
    0.75
    """
    s = scores.reshape(-1).double()
    t = targets.reshape(-1).bool()
    npos, nneg = int(t.sum()), int((~t).sum())
    if npos == 0 or nneg == 0:
        return torch.tensor(float("nan"))
    order = torch.argsort(s)
    ss = s[order]
    ranks = torch.empty_like(s)
    ranks[order] = torch.arange(1, len(s) + 1, dtype=s.dtype)
    # average ranks over ties
    uniq, inv, counts = torch.unique_consecutive(ss, return_inverse=True, return_counts=True)
    if len(uniq) < len(ss):
        csum = torch.cumsum(counts, 0).double()
        avg = csum - (counts.double() - 1) / 2  # mean rank of each tie group
        ranks[order] = avg[inv]
    u = ranks[t].sum() - npos * (npos + 1) / 2
    return u / (npos * nneg)


def _binary_scores(out: Tensor) -> Tensor:
    if out.dim() >= 2 and out.shape[-1] == 2:
        return out[..., 1] - out[..., 0]
    return out.reshape(-1)


METRICS: Registry[Metric] = Registry("metric")
for _m in [
    Metric("accuracy", lambda o, y: (o.argmax(-1) == y).float()),
    Metric("error", lambda o, y: (o.argmax(-1) != y).float(), higher_is_better=False),
    Metric("mse", lambda o, y: (o.reshape(y.shape).float() - y.float()) ** 2, higher_is_better=False),
    Metric("rmse", lambda o, y: (o.reshape(y.shape).float() - y.float()) ** 2, finalize=math.sqrt,
           higher_is_better=False),
    Metric("mae", lambda o, y: (o.reshape(y.shape).float() - y.float()).abs(), higher_is_better=False),
    Metric("perplexity", lambda o, y: F.cross_entropy(o.reshape(-1, o.shape[-1]).float(), y.reshape(-1),
                                                      reduction="none"),
           finalize=lambda v: math.exp(min(v, 700.0)), higher_is_better=False),
    Metric("auc", lambda o, y: roc_auc(_binary_scores(o), y), kind="global"),
]:
    METRICS.register(_m.name, help=f"{_m.kind} metric")(_m)


# ------------------------------------------------------------------------------------------ losses

def _ce(o: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(o.reshape(-1, o.shape[-1]), y.reshape(-1))


def _mse(o: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(o.reshape(y.shape), y.to(o.dtype))


def _bce(o: Tensor, y: Tensor) -> Tensor:
    if o.dim() >= 2 and o.shape[-1] == 2 and o.shape != y.shape:
        return F.cross_entropy(o, y.long())
    return F.binary_cross_entropy_with_logits(o.reshape(y.shape), y.to(o.dtype))


LOSSES: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("loss")
LOSSES.register("cross_entropy", help="softmax cross-entropy over the last dim")(_ce)
LOSSES.register("mse", help="mean squared error")(_mse)
LOSSES.register("bce", help="binary cross-entropy with logits")(_bce)


def get_metric(m: str | Metric) -> Metric:
    if isinstance(m, Metric):
        return m
    try:
        return METRICS.get(m)
    except Exception:
        raise ConfigError(f"unknown metric {m!r}; choose from loss, {', '.join(METRICS.names())}") from None


def get_loss(loss: str | Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    if callable(loss):
        return loss
    try:
        return LOSSES.get(loss)
    except Exception:
        raise ConfigError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES.names())}") from None


# -------------------------------------------------------------------------------------------- task

Forward = Callable[[nn.Module, Any], Tensor]


@dataclass
class Task:
    """Data + loss + metrics for one objective; several tasks can share one model in one run.

    Args:
        name: key in metrics.jsonl / final.json.
        train, eval: ``(x, y)`` tensors or any indexable dataset returning ``(x, y)`` batches.
        loss: name in :data:`LOSSES` or ``fn(outputs, targets) -> scalar``.
        metrics: names in :data:`METRICS` or :class:`Metric` objects; the task's mean evaluation
            loss is always reported as ``"loss"`` as well.
        head: optional module applied to the model's output (trained and checkpointed with the model).
        forward: optional ``fn(model, x) -> outputs`` replacing ``model(x)`` — for one trunk with
            per-task heads, mixture weights per task, a ``task=`` argument, etc. The head (if any)
            is applied to its result.
        weight: loss weight when the tasks' losses are summed (``multitask: sum``).
        batch_size: per-task global batch size (default: the run's ``batch_size``).
        transform: optional ``fn(x) -> x`` applied to training batches (augmentation; may use the
            global torch RNG, which is checkpointed).
        evaluate: optional ``fn(model) -> {metric: value}`` replacing the batched evaluation of
            ``eval`` (e.g. a language model that carries its state through the test stream).
        order: ``"shuffle"`` (a fresh seeded permutation per epoch) or ``"sequential"`` (batch k is
            samples ``[k*B, (k+1)*B)``, wrapping per epoch: truncated-BPTT streams).
    """

    name: str
    train: Any
    eval: Any = None
    loss: str | Callable[[Tensor, Tensor], Tensor] = "cross_entropy"
    metrics: Sequence[str | Metric] = ("accuracy",)
    head: nn.Module | None = None
    forward: Forward | None = None
    weight: float = 1.0
    batch_size: int | None = None
    transform: Callable[[Any], Any] | None = None
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    order: str = "shuffle"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.order not in ("shuffle", "sequential"):
            raise ConfigError(f"task {self.name!r}: order={self.order!r}; use 'shuffle' or 'sequential'")
        self.train_data = as_data(self.train)
        self.eval_data = as_data(self.eval)
        for split, d in (("training", self.train_data), ("evaluation", self.eval_data)):
            if d is not None and len(d) == 0:
                raise ConfigError(f"task {self.name!r}: the {split} data is empty; pass at least one sample")
        self.loss_fn = get_loss(self.loss)
        self.metric_objs = [get_metric(m) for m in self.metrics if m != "loss"]

    def outputs(self, model: nn.Module, x: Any) -> Tensor:
        out = self.forward(model, x) if self.forward is not None else model(x)
        return self.head(out) if self.head is not None else out
