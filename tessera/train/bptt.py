"""Truncated backpropagation through time on the engine: a token stream as a ``sequential`` task.

A corpus ``(N,)`` is laid out as ``B`` contiguous streams side by side, ``(N // B, B)`` (the standard
word-LM layout). :class:`TokenStream` is an indexable dataset whose items are (chunk, stream) pairs:
item ``k * B + s`` is stream ``s`` of the k-th chunk of ``bptt + 1`` rows, so with
``Task(order="sequential", batch_size=B)`` training batch ``k`` is chunk ``k`` of every stream, and
under ``torchrun`` each rank gets its own contiguous slice of the streams. :class:`CarriedState` is
the task's ``forward``: it carries the recurrent state (detached) from batch to batch, restarts it at
the first chunk of every epoch, and is checkpointed by the engine, so a resumed run continues with the
exact state. :func:`stream_perplexity` evaluates a model carrying its state through a whole test stream.

>>> import torch
>>> from torch import nn
>>> from tessera.train import Task, Trainer, TrainConfig
>>> class LM(nn.Module):                      # tokens (T, B), state -> logits (T*B, V), state
...     def __init__(self):
...         super().__init__()
...         self.emb, self.rnn, self.out = nn.Embedding(20, 8), nn.LSTM(8, 8), nn.Linear(8, 20)
...     def forward(self, x, state=None):
...         h, state = self.rnn(self.emb(x), state)
...         return self.out(h).flatten(0, 1), state
>>> tokens = torch.arange(400) % 20
>>> stream = TokenStream(tokens, batch=4, bptt=5)       # 100 rows x 4 streams -> 20 chunks of <= 5 steps
>>> len(stream), stream.chunks
(80, 20)
>>> task = Task("lm", train=stream, order="sequential", batch_size=4, forward=CarriedState(), metrics=[],
...             evaluate=lambda m: stream_perplexity(m, tokens[:100], batch=2, bptt=5))
>>> cfg = TrainConfig(steps=100, batch_size=4, progress="off", log_every=0, checkpoint_every=0,
...                   optim={"name": "adam", "lr": 3e-2}, ema={"enabled": False})
>>> _ = torch.manual_seed(0)
>>> final = Trainer(LM(), [task], cfg).fit()
>>> final["tasks"]["lm"]["perplexity"] < 5.0           # the cyclic stream is learnable (uniform: 20)
True
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from . import dist

__all__ = ["TokenStream", "CarriedState", "stream_perplexity", "batchify"]


def batchify(tokens: Tensor, batch: int) -> Tensor:
    """``(N,)`` -> ``(N // B, B)``: B contiguous streams side by side (the tail that does not fill a row is dropped)."""
    n = tokens.numel() // batch
    if n < 2:
        raise ConfigError(f"a stream of {tokens.numel()} tokens is too short for {batch} streams; "
                          f"use fewer streams (batch) or more tokens")
    return tokens[: n * batch].reshape(batch, n).t().contiguous()


class TokenStream:
    """Indexable ``(x, y)`` data of truncated-BPTT chunks: item ``k * B + s`` = stream s of chunk k.

    ``data[idx]`` (all indices of one chunk) returns ``x = (tokens (T, b), first)`` and ``y = next tokens
    (T, b)``, where ``T = min(bptt, rows left)`` and ``first`` is a bool tensor, True for chunk 0 (the
    carried state restarts there).
    """

    def __init__(self, tokens: Tensor, batch: int, bptt: int):
        if bptt < 1:
            raise ConfigError(f"bptt must be >= 1, got {bptt}")
        self.data = batchify(tokens.reshape(-1), batch)                  # (R, B)
        self.batch, self.bptt = int(batch), int(bptt)
        self.starts = list(range(0, self.data.shape[0] - 1, self.bptt))  # first row of every chunk
        self.chunks = len(self.starts)

    def __len__(self) -> int:
        return self.chunks * self.batch

    def __getitem__(self, idx: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
        idx = torch.as_tensor(idx).reshape(-1)
        k = idx // self.batch
        if not bool((k == k[0]).all()):
            raise ConfigError("a TokenStream batch must come from one chunk; use Task(order='sequential', "
                              "batch_size=<the stream's batch>)")
        i = self.starts[int(k[0])]
        T = min(self.bptt, self.data.shape[0] - 1 - i)
        cols = idx % self.batch
        x = self.data[i:i + T, cols]                                     # (T, b) inputs
        y = self.data[i + 1:i + 1 + T, cols]                             # (T, b) next tokens
        return (x, torch.tensor(int(k[0]) == 0)), y


def _detach(state: Any) -> Any:
    return tuple(s.detach() for s in state) if isinstance(state, (tuple, list)) else state.detach()


class CarriedState:
    """``Task.forward`` of a recurrent LM trained by truncated BPTT on a :class:`TokenStream`.

    Calls ``net(tokens, state) -> (logits, new state)`` where ``net`` is the trained model or
    ``pick(model)`` (e.g. ``lambda m: m[1]`` for one task of a joint model), keeps the new state
    detached for the next batch, and restarts it at the first chunk of each epoch. The state is a
    tensor or a tuple of tensors whose dim 1 is the batch (``nn.LSTM``'s ``(layers, B, H)``).

    ``state_dict`` (called by the engine on every rank) gathers all ranks' streams, so a checkpoint holds
    the whole batch's state and a resumed run -- on any number of ranks dividing the batch -- continues
    with it exactly.
    """

    def __init__(self, pick: Callable[[nn.Module], nn.Module] | None = None):
        self.pick = pick
        self.state: Any = None

    def __call__(self, model: nn.Module, x: tuple[Tensor, Tensor]) -> Tensor:
        tokens, first = x
        net = model if self.pick is None else self.pick(model)
        if bool(first):
            self.state = None
        out, state = net(tokens, self.state)
        self.state = _detach(state)
        return out

    def state_dict(self) -> dict[str, Any]:
        if self.state is None:
            return {"state": None}
        parts = self.state if isinstance(self.state, (tuple, list)) else (self.state,)
        full = [dist.all_gather_cat(p.transpose(0, 1).contiguous()).transpose(0, 1).cpu() for p in parts]
        return {"state": full, "tuple": isinstance(self.state, (tuple, list))}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        full = sd.get("state")
        if full is None:
            self.state = None
            return
        w, r = dist.world_size(), dist.rank()
        per = full[0].shape[1] // w
        parts = [p[:, r * per:(r + 1) * per].clone() for p in full]         # this rank's streams
        self.state = tuple(parts) if sd.get("tuple") else parts[0]


@torch.no_grad()
def stream_perplexity(net: nn.Module, tokens: Tensor, *, batch: int = 10, bptt: int = 35) -> dict[str, float]:
    """``{"loss", "perplexity"}`` of ``net(tokens (T, B), state) -> (logits (T*B, V), state)`` over a whole
    stream (``batch`` streams, chunks of ``bptt``), carrying the state; call it with ``net`` in eval mode."""
    stream = TokenStream(tokens, batch, bptt)
    device = next(net.parameters()).device
    total, count, state = 0.0, 0, None
    for k in range(stream.chunks):
        (x, _), y = stream[torch.arange(k * batch, (k + 1) * batch)]
        out, state = net(x.to(device), state)
        total += float(nn.functional.cross_entropy(out.float(), y.reshape(-1).to(device), reduction="sum"))
        count += y.numel()
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0))}
