"""Export one task of a MixtureNet as a plain module with materialized weights (zero mixing cost).

Every layer becomes an ordinary block with real ``nn.Parameter`` weights. Layers whose mixture
weights are exactly one-hot on the same template share that template's Parameter objects (one
copy in memory, counted once by ``parameters()``); their BN running statistics stay per layer,
because they differ (the paper never mixes them). ``snap`` rounds layers whose confidence is at
least ``snap`` to one-hot first (this changes the outputs slightly; off by default).

>>> from tessera.mixture import MixtureNet
>>> net = MixtureNet.from_isometric(10, num_templates=2, depth=4, channels=8, head_channels=(16, 16),
...                                 patch=4, signature="sequential").eval()
>>> plain = export(net)
>>> x = torch.randn(2, 1, 16, 16)
>>> torch.equal(plain(x), net(x)), plain.signature
(True, [0, 0, 1, 1])
>>> plain.blocks[0].conv_pw.weight is plain.blocks[1].conv_pw.weight    # layers 0, 1 share template 0
True
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn.isometric import isometric_body
from .network import MixtureNet
from .over import ModelMixture
from .templates import restore_buffer

__all__ = ["ExportedNet", "export", "max_difference"]


class ExportedNet(nn.Module):
    """Input adapter -> blocks -> output adapter -> dropout -> head: the exported task."""

    def __init__(self, input_adapter: nn.Module, blocks: list[nn.Module], output_adapter: nn.Module,
                 dropout: nn.Module, head: nn.Module, block_input: str = "none",
                 signature: list[int | None] | None = None, channels_last: bool = False):
        super().__init__()
        self.input_adapter = input_adapter
        self.blocks = nn.ModuleList(blocks)
        self.output_adapter = output_adapter
        self.dropout = dropout
        self.head = head
        self.block_input = block_input
        self.signature = signature or []   # template per layer, None where the layer is a true mixture
        self.channels_last = channels_last

    def forward_features(self, x: Tensor, **block_kwargs: Any) -> Tensor:
        return isometric_body(self.input_adapter, self.blocks, x, self.block_input, self.channels_last, block_kwargs)

    def forward_embedding(self, x: Tensor, **block_kwargs: Any) -> Tensor:
        return self.output_adapter(self.forward_features(x, **block_kwargs))

    def forward(self, x: Tensor, **block_kwargs: Any) -> Tensor:
        return self.head(self.dropout(self.forward_embedding(x, **block_kwargs)))


def _set(block: nn.Module, spec, value: Tensor | nn.Parameter, kind: str) -> None:
    m = block.get_submodule(spec.module)
    if kind == "param":
        m._parameters[spec.attr] = value if isinstance(value, nn.Parameter) else nn.Parameter(value)
    else:
        m._buffers[spec.attr] = value


@torch.no_grad()
def export(model: MixtureNet | ModelMixture, task: str | None = None, *,
           snap: float | None = None) -> ExportedNet | nn.Module:
    """Materialize ``task`` (default: the active one) of ``model`` into a :class:`ExportedNet` (a
    :class:`~tessera.mixture.over.ModelMixture`: into the user's own architecture)."""
    if isinstance(model, ModelMixture):
        if snap is not None:
            raise ConfigError("snap is not supported for a ModelMixture; export it without snap")
        return model.export(task)
    if not isinstance(model, MixtureNet):
        hint = "; MUiR models export with tessera.hyper.export" if type(model).__name__ == "MuirModels" else ""
        raise ConfigError(f"tessera.mixture.export expects a MixtureNet or a ModelMixture, got "
                          f"{type(model).__name__}{hint}")
    task = model._check_task(task) if task else model.task
    if snap is not None and not 0.0 < snap <= 1.0:
        raise ConfigError(f"snap must be in (0, 1], got {snap}")
    bank = model.bank
    coeff = model.coefficients(task).detach()                        # (L, K)
    conf, idx = coeff.max(-1)
    one_hot = (conf == 1.0) if snap is None else (conf >= snap)
    if snap is not None:
        coeff = torch.where(one_hot[:, None], nn.functional.one_hot(idx, bank.num_templates).to(coeff), coeff)
    gen = coeff @ bank.weight.detach()                               # (L, K) @ (K, P) -> (L, P)
    stats = getattr(model.stats, task)                               # (L*S + A,)
    S = model.stats_per_layer
    patches = model.patches[task].detach() if model.bn == "patch" else None
    shared: dict[int, dict[str, nn.Parameter]] = {}
    proto = bank.prototype
    blocks, sig = [], []
    for l in range(model.depth):
        blk = copy.deepcopy(proto).to(gen.device, gen.dtype)
        k = int(idx[l]) if bool(one_hot[l]) else None
        sig.append(k)
        params = shared.setdefault(k, {}) if k is not None else {}
        for s in bank.layout:                                        # mixed tensors
            if s.name not in params:
                params[s.name] = nn.Parameter(gen[l, s.offset:s.offset + s.numel].view(s.shape).clone())
            _set(blk, s, params[s.name], "param")
        for s in bank.norm_layout:                                   # BN affine not in the bank
            if patches is not None:
                v = patches[l, s.offset:s.offset + s.numel].view(s.shape).clone()
            else:
                v = getattr(model.blocks[l].get_submodule(s.module), s.attr).detach().clone()
            _set(blk, s, nn.Parameter(v), "param")
        for s in bank.stats_layout:                                  # running statistics of this task
            o = l * S + s.offset
            _set(blk, s, stats[o:o + s.numel].view(s.shape).clone(), "buffer")
        for name, buf in model.blocks[l].named_buffers():            # other buffers (num_batches_tracked...)
            mod, _, attr = name.rpartition(".")
            blk.get_submodule(mod)._buffers[attr] = buf.detach().clone()
        blocks.append(blk)
    adapters = nn.ModuleDict({"input_adapter": model.input_adapter, "output_adapter": model.output_adapter})
    adapters = copy.deepcopy(adapters)
    for path, attr, off, n in model.adapter_stats:                   # adapter statistics of this task
        m = adapters.get_submodule(path)
        restore_buffer(m, attr, stats[off:off + n].view(getattr(m, attr).shape).clone())
    out = ExportedNet(adapters["input_adapter"], blocks, adapters["output_adapter"],
                       copy.deepcopy(model.dropout), copy.deepcopy(model.heads[task]), model.block_input, sig,
                       model.channels_last)
    return out.train(model.training)


@torch.no_grad()
def max_difference(model: MixtureNet, exported: nn.Module, x: Tensor, task: str | None = None) -> float:
    """Largest absolute output difference between a MixtureNet task and its exported export (eval mode)."""
    was = model.training, exported.training
    model.eval(), exported.eval()
    try:
        return float((model(x, task=task) - exported(x)).abs().max())
    finally:
        model.train(was[0]), exported.train(was[1])
