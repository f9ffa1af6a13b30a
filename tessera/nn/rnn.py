"""``nn.LSTM`` as plain tensor operations, so a batch of LSTM models can run under ``torch.func.vmap``.

``vmap`` has no batching rule for the fused LSTM kernel. :func:`lstm_forward` computes what
``nn.LSTM.forward`` computes (gates ``i, f, g, o`` in PyTorch's order, any number of layers, either
direction, ``batch_first``, unbatched input, ``(h0, c0)``, inter-layer dropout) from the module's
weights as they are read at call time -- so weights bound by a vectorized group (stacked per task)
are the ones used. :class:`functional_lstms` swaps it in for every LSTM of a module for the
duration of a ``with`` block.

>>> _ = torch.manual_seed(0)
>>> lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True, bidirectional=True)
>>> x = torch.randn(2, 5, 3)
>>> ref, (h, c) = lstm(x)
>>> out, (h2, c2) = lstm_forward(lstm, x)
>>> bool(torch.allclose(out, ref, atol=1e-6) and torch.allclose(c2, c, atol=1e-6))
True
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import ConfigError

__all__ = ["lstm_forward", "functional_lstms", "why_not_functional", "lstms"]


def why_not_functional(module: nn.Module) -> str | None:
    """Why ``module``'s recurrent layers cannot run as :func:`lstm_forward` (None: they can)."""
    for m in module.modules():
        if isinstance(m, nn.RNNBase):
            if type(m) is not nn.LSTM:
                return (f"it has a {type(m).__name__} (vmap has no batching rule for its fused kernel; only nn.LSTM "
                        "has a step-by-step form here)")
            if m.proj_size:
                return "it has an LSTM with proj_size > 0 (no step-by-step form here)"
    return None


def lstm_forward(m: nn.LSTM, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``m(x, hx)`` step by step: ``x (S, B, in)`` (``(B, S, in)`` with ``batch_first``, or ``(S, in)``)."""
    if isinstance(x, PackedSequence):
        raise ConfigError("a vectorized LSTM cannot take a PackedSequence; pad the sequences or use vectorize=False")
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(1)                                                    # (S, 1, in)
        hx = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    elif m.batch_first:
        x = x.transpose(0, 1)                                                 # (S, B, in)
    S, B = x.shape[:2]
    D, H = 2 if m.bidirectional else 1, m.hidden_size
    if hx is None:
        zeros = x.new_zeros(m.num_layers * D, B, H)
        hx = (zeros, zeros)
    h0, c0 = hx                                                               # (layers*D, B, H)
    h_n, c_n = [], []
    h_in = x
    for layer in range(m.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_ih, w_hh = getattr(m, "weight_ih" + sfx), getattr(m, "weight_hh" + sfx)   # (4H, in), (4H, H)
            b_ih, b_hh = (getattr(m, "bias_ih" + sfx), getattr(m, "bias_hh" + sfx)) if m.bias else (None, None)
            gates_x = F.linear(h_in, w_ih, b_ih)                              # (S, B, 4H): all steps at once
            h, c = h0[layer * D + d], c0[layer * D + d]                       # (B, H)
            ys: list[Tensor] = [x] * S
            for t in (range(S - 1, -1, -1) if d else range(S)):
                i, f, g, o = (gates_x[t] + F.linear(h, w_hh, b_hh)).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                ys[t] = h
            outs.append(torch.stack(ys))                                      # (S, B, H)
            h_n.append(h)
            c_n.append(c)
        h_in = outs[0] if D == 1 else torch.cat(outs, -1)                     # (S, B, D*H)
        if m.dropout and m.training and layer < m.num_layers - 1:
            h_in = F.dropout(h_in, m.dropout, training=True)
    hn, cn = torch.stack(h_n), torch.stack(c_n)                               # (layers*D, B, H)
    if not batched:
        return h_in.squeeze(1), (hn.squeeze(1), cn.squeeze(1))
    return (h_in.transpose(0, 1) if m.batch_first else h_in), (hn, cn)


def lstms(module: nn.Module) -> list[nn.LSTM]:
    """The ``nn.LSTM`` layers of ``module`` (exactly that class: a subclass may override ``forward``)."""
    return [m for m in module.modules() if type(m) is nn.LSTM]


class functional_lstms:
    """``with functional_lstms(module):`` every ``nn.LSTM`` in ``module`` runs as :func:`lstm_forward`."""

    def __init__(self, module: nn.Module):
        self.lstms = lstms(module)

    def __enter__(self) -> "functional_lstms":
        for m in self.lstms:
            m.__dict__["forward"] = _bound(m)
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in self.lstms:
            m.__dict__.pop("forward", None)


def _bound(m: nn.LSTM) -> Any:
    def forward(x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        return lstm_forward(m, x, hx)
    return forward
