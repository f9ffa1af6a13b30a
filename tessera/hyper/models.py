"""The three task architectures of MUiR's cross-modal experiment (paper 003, §4.2, S.5), CPU-sized.

* :class:`LeNet` (vision) - five layers, sizes multiples of 16: conv 5x5 (in -> 16), max-pool, conv 5x5
  (16 -> 16), max-pool, fc (16*4*4 -> 128), fc (128 -> 96), fc (96 -> classes). MUiR reparameterizes the
  middle three (conv2, fc1, fc2).
* :class:`LSTMLanguageModel` (text) - word embedding, 2-layer LSTM, decoder tied to the embedding
  (dropout on the embedding and the LSTM output), as the paper's code. The LSTM is reparameterized.
* :class:`DeepBind` (DNA) - per-base embedding (a kernel-1 conv of the one-hot input), conv with 24-wide
  motif filters, global max-pool, fc, fc -> 1. The conv and the first fc are reparameterized.
* :class:`TransformerLM` (text, not in the paper) - a small causal transformer LM with the LSTM LM's
  interface: embedding, learned positions, ``nn.TransformerEncoderLayer`` x layers (pre-norm), decoder tied
  to the embedding. Attention q/k/v and output projections and the feed-forward Linears are reparameterized.

Each model's first and last layer are the unshared adapters (S.3), which is what
:func:`tessera.hyper.reparameterize` targets by default.

>>> m = LeNet()
>>> m(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
>>> lm = LSTMLanguageModel(vocab=50, hidden=32)
>>> logits, state = lm(torch.zeros(7, 3, dtype=torch.long))          # (T, B) tokens
>>> logits.shape, state[0].shape
(torch.Size([21, 50]), torch.Size([2, 3, 32]))
>>> awd = LSTMLanguageModel(vocab=50, hidden=24, embed=32)             # 32 -> 24 -> 32, tied embedding
>>> [tuple(r.weight_hh_l0.shape) for r in awd.rnns], len(awd(torch.zeros(7, 3, dtype=torch.long))[1])
([(96, 24), (128, 32)], 4)
>>> DeepBind(channels=16)(torch.zeros(5, 4, 101)).shape
torch.Size([5])
>>> tf = TransformerLM(vocab=50, hidden=32, heads=2, memory=4)
>>> logits, ctx = tf(torch.zeros(7, 3, dtype=torch.long))           # ctx: the last 4 tokens, next call's context
>>> logits.shape, ctx.shape
(torch.Size([21, 50]), torch.Size([4, 3]))
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ShapeError

__all__ = ["LeNet", "LSTMLanguageModel", "TransformerLM", "DeepBind", "detach_state", "TASK_MODELS"]


class LeNet(nn.Module):
    """LeNet-5 with layer sizes rounded up to multiples of 16 (S.5); no padding, so 28x28 -> 4x4 maps."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image: int = 28, channels: int = 16,
                 hidden: tuple[int, int] = (128, 96)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 5)
        self.conv2 = nn.Conv2d(channels, channels, 5)
        side = ((image - 4) // 2 - 4) // 2
        self.fc1 = nn.Linear(channels * side * side, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], num_classes)

    def forward(self, x: Tensor) -> Tensor:                          # (B, C, H, W) -> (B, classes)
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc3(F.relu(self.fc2(x)))


def detach_state(state: Any) -> Any:
    """Truncated BPTT: the recurrent state without its history."""
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def init_lm_ends(encoder: nn.Embedding, decoder: nn.Linear, tie: bool) -> None:
    """U(-0.1, 0.1) embedding, zero decoder bias; the decoder weight IS the embedding (tied) or U(-0.1, 0.1)."""
    nn.init.uniform_(encoder.weight, -0.1, 0.1)
    nn.init.zeros_(decoder.bias)
    if tie:
        decoder.weight = encoder.weight
    else:
        nn.init.uniform_(decoder.weight, -0.1, 0.1)


class LSTMLanguageModel(nn.Module):
    """Word-level LM: embedding (V, E) -> LSTM layers -> decoder (tied to the embedding).

    ``forward(tokens (T, B), state=None) -> (logits (T*B, V), state)``; pass the returned state (after
    :func:`detach_state`) to the next call for truncated backpropagation through time.

    ``embed=None`` (or ``embed == hidden``): E = hidden, one ``nn.LSTM(hidden, hidden, layers)``; its state
    is ``(h, c)``, each ``(layers, B, hidden)``. Otherwise the AWD-LSTM layout: one LSTM per layer, E -> hidden
    -> ... -> E, so the hidden size can change while the tied embedding keeps size E; the state is the
    flat tuple ``(h_1, c_1, ..., h_layers, c_layers)``, each ``(1, B, size)``.
    """

    def __init__(self, vocab: int, hidden: int = 128, layers: int = 2, dropout: float = 0.2, tie: bool = True,
                 embed: int | None = None):
        super().__init__()
        E = hidden if embed is None else int(embed)
        self.vocab, self.hidden, self.layers, self.embed = vocab, hidden, layers, E
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, E)
        if E == hidden:
            self.lstm = nn.LSTM(hidden, hidden, num_layers=layers)
        else:
            if layers < 2:
                raise ConfigError(f"LSTMLanguageModel: embed != hidden needs layers >= 2 (E -> hidden -> E), got layers={layers}")
            sizes = [E] + [hidden] * (layers - 1) + [E]
            self.rnns = nn.ModuleList(nn.LSTM(a, b) for a, b in zip(sizes, sizes[1:]))
        self.decoder = nn.Linear(E, vocab)
        init_lm_ends(self.encoder, self.decoder, tie)

    def forward(self, tokens: Tensor, state: tuple[Tensor, ...] | None = None
                ) -> tuple[Tensor, tuple[Tensor, ...]]:
        emb = self.drop(self.encoder(tokens))                         # (T, B, E)
        if not hasattr(self, "rnns"):
            out, state = self.lstm(emb, state)                        # (T, B, h)
            return self.decoder(self.drop(out).flatten(0, 1)), state  # (T*B, V)
        out, new = emb, []
        for i, rnn in enumerate(self.rnns):
            out, (h, c) = rnn(out, None if state is None else (state[2 * i], state[2 * i + 1]))
            new += [h, c]
        return self.decoder(self.drop(out).flatten(0, 1)), tuple(new)


class TransformerLM(nn.Module):
    """Causal transformer LM: embedding (V, h) + positions -> pre-norm encoder layers -> decoder (tied).

    ``forward(tokens (T, B), state=None) -> (logits (T*B, V), state)`` like :class:`LSTMLanguageModel`: the
    state is the last ``memory`` tokens ``(M, B)``, read again as left context by the next call (its logits
    are not returned), so truncated-BPTT loops work unchanged. ``max_len`` positions >= memory + T.
    """

    def __init__(self, vocab: int, hidden: int = 128, layers: int = 2, heads: int = 4, ffn: int | None = None,
                 dropout: float = 0.2, memory: int = 32, max_len: int = 128, tie: bool = True):
        super().__init__()
        self.vocab, self.hidden, self.memory, self.max_len = vocab, hidden, memory, max_len
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, hidden)
        self.pos = nn.Parameter(torch.randn(max_len, 1, hidden) * 0.02)             # (P, 1, h) learned positions
        layer = nn.TransformerEncoderLayer(hidden, heads, ffn or 2 * hidden, dropout, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden), enable_nested_tensor=False)
        self.decoder = nn.Linear(hidden, vocab)
        init_lm_ends(self.encoder, self.decoder, tie)

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        T = tokens.shape[0]
        seq = tokens if state is None else torch.cat([state, tokens])                # (M + T, B)
        if seq.shape[0] > self.max_len:
            raise ShapeError(f"TransformerLM: {seq.shape[0]} tokens (memory + T) exceed max_len={self.max_len}; "
                             f"build it with a larger max_len or feed shorter chunks")
        S = seq.shape[0]
        h = self.drop(self.encoder(seq) + self.pos[:S])                             # (S, B, h)
        mask = torch.triu(torch.full((S, S), float("-inf"), device=seq.device), 1)  # causal (S, S)
        h = self.layers(h, mask=mask, is_causal=True)[-T:]                          # (T, B, h)
        return self.decoder(self.drop(h).flatten(0, 1)), seq[-self.memory:] if self.memory else seq[:0]


class DeepBind(nn.Module):
    """DeepBind-C: one-hot DNA (B, 4, L) -> embed (k=1) -> conv (k=24, C -> C) -> ReLU -> global max -> fc -> 1.

    The paper's DeepBind-256 has C = hidden = 256; the original DeepBind had 16 motifs and 32 hidden units.
    The conv and the first fc start He-normal (as the paper's code).
    """

    def __init__(self, channels: int = 64, hidden: int = 64, kernel: int = 24):
        super().__init__()
        self.embed = nn.Conv1d(4, channels, 1)
        self.conv = nn.Conv1d(channels, channels, kernel)
        self.fc = nn.Linear(channels, hidden)
        self.out = nn.Linear(hidden, 1)
        for layer in (self.conv, self.fc):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:                           # (B, 4, L) -> (B,) logits / values
        h = F.relu(self.conv(self.embed(x))).amax(-1)                 # (B, C)
        return self.out(F.relu(self.fc(h))).squeeze(-1)


TASK_MODELS = {"lenet": LeNet, "lstm": LSTMLanguageModel, "transformer": TransformerLM, "deepbind": DeepBind}
"""Architecture name -> class."""
