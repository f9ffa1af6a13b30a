"""A model zoo of the networks users actually bring (timm-style: a registry, tests parametrized over it).

Each entry builds a tiny, seeded model, its inputs, and says how every method applies to it: MUiR
(``muir`` keyword arguments for ``reparameterize``, the parameter pairs that must stay tied), template mixtures
over its repeated blocks (``blocks`` pattern, optional per-task ``head``), compatible components (``split``:
where it splits into extractor / head; None where its forward is not a chain of children).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from tessera.hyper.models import LSTMLanguageModel, TransformerLM


@dataclass
class Entry:
    name: str
    build: Callable[[], nn.Module]
    inputs: Callable[[], tuple]
    muir: dict[str, Any] = field(default_factory=dict)
    ties: list[tuple[str, str]] = field(default_factory=list)
    blocks: str | None = None
    head: str | None = None
    split: str | None = None
    output: Callable[[Any], torch.Tensor] = lambda o: o
    needs: str | None = None  # an optional package


ZOO: dict[str, Entry] = {}


def register(name: str, inputs: Callable[[], tuple], **kw: Any) -> Callable:
    def deco(cls: Callable[[], nn.Module]) -> Callable:
        ZOO[name] = Entry(name, cls, inputs, **kw)
        return cls
    return deco


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(1)


def images(c: int = 3, side: int = 8, n: int = 2) -> Callable[[], tuple]:
    return lambda: (torch.randn(n, c, side, side, generator=_gen()),)


def tokens(shape: tuple[int, ...], vocab: int = 30) -> Callable[[], tuple]:
    return lambda: (torch.randint(0, vocab, shape, generator=_gen()),)


@register("mlp", lambda: (torch.randn(4, 6, generator=_gen()),), muir={"block": (8, 8)}, blocks="body.*",
          head="fc", split="body")
class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(6, 16)
        self.body = nn.Sequential(*[nn.Sequential(nn.Linear(16, 16), nn.GELU()) for _ in range(3)])
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)))


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else None)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


@register("resnet_bn", images(), muir={"block": (8, 8)}, blocks="layer1.*", head="fc", split="layer1")
class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = nn.Sequential(Basic(8, 8), Basic(8, 8))
        self.layer2 = nn.Sequential(Basic(8, 16, 2), Basic(16, 16))
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.layer2(self.layer1(self.stem(x))))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int = 2):
        super().__init__()
        h = c * expand
        self.conv = nn.Sequential(nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, h, 3, 1, 1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
                                  nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return x + self.conv(x)


@register("mobilenetv2", images(), muir={"block": (8, 8)}, blocks="blocks.*", head="classifier", split="blocks")
class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.blocks = nn.Sequential(*[InvertedResidual(8) for _ in range(3)])
        self.head = nn.Sequential(nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(16, 4)

    def forward(self, x):
        return self.classifier(self.head(self.blocks(self.stem(x))))


class ConvNeXtBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm, self.pw1, self.pw2 = nn.LayerNorm(c), nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5))                 # layer scale

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))                    # (N, H, W, C)
        return x + (self.gamma * self.pw2(F.gelu(self.pw1(y)))).permute(0, 3, 1, 2)


@register("convnext", images(side=8), muir={"block": (8, 8)}, blocks="blocks.*", head="fc", split="blocks")
class ConvNeXt(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 2, 2)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(8) for _ in range(3)])
        self.pool, self.flat, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.flat(self.pool(self.blocks(self.stem(x)))))


class ViTBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln1, self.attn, self.ln2 = nn.LayerNorm(d), nn.MultiheadAttention(d, 2, batch_first=True), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x, mask=None):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, key_padding_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


@register("vit", images(side=8), muir={"block": (8, 8)}, blocks="blocks.*", head="head")
class ViT(nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 5, d) * 0.02)
        self.blocks = nn.ModuleList([ViTBlock(d) for _ in range(3)])
        self.norm, self.head = nn.LayerNorm(d), nn.Linear(d, 4)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)                     # (N, 4, d)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.head(self.norm(x[:, 0]))


@register("nn_transformer", lambda: (torch.randint(0, 20, (2, 5), generator=_gen()),
                                     torch.randint(0, 20, (2, 4), generator=_gen())),
          muir={"block": (8, 8)}, blocks="core.encoder.layers.*")
class Seq2Seq(nn.Module):
    def __init__(self, d: int = 16):
        super().__init__()
        self.src, self.tgt = nn.Embedding(20, d), nn.Embedding(20, d)
        self.core = nn.Transformer(d, 2, 2, 1, 32, dropout=0.1, batch_first=True)
        self.out = nn.Linear(d, 20)

    def forward(self, src, tgt):
        mask = self.core.generate_square_subsequent_mask(tgt.shape[1])
        return self.out(self.core(self.src(src), self.tgt(tgt), tgt_mask=mask))


@register("gru_lm_tied", tokens((2, 6)), muir={"block": (8, 8), "target_modules": ["emb", "rnn"]},
          ties=[("emb.weight", "decoder.weight")])
class GRULM(nn.Module):
    def __init__(self, vocab: int = 30, d: int = 16):
        super().__init__()
        self.emb, self.rnn, self.decoder = nn.Embedding(vocab, d), nn.GRU(d, d, 2, batch_first=True), nn.Linear(d, vocab)
        self.decoder.weight = self.emb.weight

    def forward(self, x):
        return self.decoder(self.rnn(self.emb(x))[0])


register("lstm_lm", tokens((6, 2)), muir={"block": (8, 8)}, ties=[("encoder.weight", "decoder.weight")],
         output=lambda o: o[0])(lambda: LSTMLanguageModel(30, 16, layers=2, dropout=0.1))


@register("lstm_proj_bidir", tokens((2, 6)), muir={"block": (4, 4), "target_modules": ["rnn"]})
class BiLSTMTagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(30, 8)
        self.rnn = nn.LSTM(8, 16, 2, batch_first=True, bidirectional=True, proj_size=4)
        self.out = nn.Linear(8, 5)

    def forward(self, x):
        return self.out(self.rnn(self.emb(x))[0])


register("transformer_lm", tokens((6, 2)), muir={"block": (8, 8), "target_modules": ["encoder", "layers.layers.*"]},
         ties=[("encoder.weight", "decoder.weight")], blocks="layers.layers.*", output=lambda o: o[0])(
    lambda: TransformerLM(30, 16, layers=2, heads=2, dropout=0.1, memory=2, max_len=16))


@register("deepbind", lambda: (torch.randn(2, 4, 20, generator=_gen()),), muir={"block": (8, 8)}, split="conv")
class DeepBindNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed, self.conv = nn.Conv1d(4, 16, 1), nn.Sequential(nn.Conv1d(16, 16, 5), nn.ReLU())
        self.pool = nn.Sequential(nn.AdaptiveMaxPool1d(1), nn.Flatten())
        self.fc, self.out = nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Linear(16, 1)

    def forward(self, x):
        return self.out(self.fc(self.pool(self.conv(self.embed(x)))))


class TCNBlock(nn.Module):
    def __init__(self, c: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=dilation, dilation=dilation, groups=2)
        self.mix = nn.Conv1d(c, c, 1)

    def forward(self, x):
        return x + self.mix(F.relu(self.conv(x)))


@register("tcn_grouped", lambda: (torch.randn(2, 3, 12, generator=_gen()),), muir={"block": (4, 4)},
          blocks="blocks.*", split="blocks")
class TCN(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp = nn.Conv1d(3, 8, 1)
        self.blocks = nn.Sequential(*[TCNBlock(8, d) for d in (1, 2, 4)])
        self.pool, self.out = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten()), nn.Linear(8, 2)

    def forward(self, x):
        return self.out(self.pool(self.blocks(self.inp(x))))


@register("conv3d_video", lambda: (torch.randn(2, 3, 4, 6, 6, generator=_gen()),), muir={"block": (8, 8)},
          split="body")
class Video3D(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv3d(8, 8, 3, padding=1), nn.BatchNorm3d(8), nn.ReLU())
        self.pool, self.fc = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten()), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc(self.pool(self.body(self.stem(x))))


@register("conv_autoencoder", images(c=1, side=8), muir={"block": (4, 4)}, split="encoder")
class AutoEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(1, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU())
        self.decoder = nn.Sequential(nn.ConvTranspose2d(8, 8, 2, 2), nn.ReLU(), nn.ConvTranspose2d(8, 1, 2, 2))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=40, n_positions=16, bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(cfg)


def _bert() -> nn.Module:
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     vocab_size=40, max_position_embeddings=16)
    return BertForMaskedLM(cfg)


register("hf_gpt2", tokens((2, 6), 40), muir={"block": (8, 8), "target_modules": ["wte", "c_attn", "c_fc", "c_proj"]},
         ties=[("transformer.wte.weight", "lm_head.weight")], blocks="transformer.h.*",
         output=lambda o: o.logits, needs="transformers")(_gpt2)
register("hf_bert", tokens((2, 6), 40), muir={"block": (8, 8)},
         ties=[("bert.embeddings.word_embeddings.weight", "cls.predictions.decoder.weight")],
         blocks="bert.encoder.layer.*", output=lambda o: o.logits, needs="transformers")(_bert)
