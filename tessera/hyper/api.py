"""``reparameterize`` ordinary models with shared hypermodules, search the alignment, ``export`` back.

>>> _ = torch.manual_seed(0)
>>> nets = [nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
...         for _ in range(2)]
>>> muir = reparameterize(nets, block=(8, 8), context=2, lam=1)   # middle Linear of each net: 2x2 blocks
>>> muir.num_locations, muir.num_modules                          # pessimistic init: K = L
(8, 8)
>>> y = muir[0](torch.randn(3, 8))                                # task 0 is a normal nn.Module
>>> opt = torch.optim.Adam(muir.param_groups(lr=1e-3))
>>> muir.begin_generation(opt); muir[1](torch.randn(3, 8)).sum().backward(); opt.step()
>>> psi0 = muir.end_generation()                                  # (L,) new alignment
>>> plain = export(muir)                                          # plain nn.Modules, same outputs
>>> x = torch.randn(4, 8)
>>> torch.equal(plain[1](x), muir[1](x))
True
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..core import GeneratedModel, take_parameter
from ..errors import ConfigError
from . import accounting
from .config import MuirConfig
from .decompose import gates_of, plan_weight, select_targets
from .hypermodules import HyperGenerator, HypermoduleBank, context_magnitude
from .search import AlignmentSearch

__all__ = ["reparameterize", "MuirModels", "export"]

Patterns = str | Sequence[str] | None


class MuirModels(nn.Module):
    """Several task models sharing one :class:`HypermoduleBank`; ``muir[t]`` is task t's nn.Module.

    ``forward(inputs)`` runs every task on its input (a tuple is unpacked) and returns the list of
    outputs, so the whole joint model can be wrapped in DDP. The alignment (Alg. 2) is driven by
    :meth:`begin_generation` / :meth:`end_generation` (or :class:`~tessera.hyper.MuirSearch` on the engine).

    DDP: the search draws from its own seeded generator and decides from the scores only, so every
    rank takes the same decisions. With the alignment fixed (n_init / n_final phases) the scores get
    no gradient: wrap with ``DDP(muir, find_unused_parameters=True)`` when training those phases.
    """

    def __init__(self, tasks: Sequence[GeneratedModel], bank: HypermoduleBank, config: MuirConfig,
                 search: AlignmentSearch, targets: Sequence[Sequence[str]]):
        super().__init__()
        self.tasks = nn.ModuleList(tasks)
        self.bank = bank
        self.config = config
        self.search = search
        self.targets = [list(t) for t in targets]     # per model: "module.param" of each decomposed weight

    # -- container ------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> GeneratedModel:
        return self.tasks[i]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.tasks)

    def forward(self, inputs: Sequence[Any]) -> list[Any]:
        """Outputs of every task: ``[task_t(*inputs[t])]`` (a non-tuple input is passed as one argument)."""
        return [t(*x) if isinstance(x, tuple) else t(x) for t, x in zip(self.tasks, inputs)]

    @property
    def generators(self) -> list[HyperGenerator]:
        return [t.generator for t in self.tasks]  # type: ignore[misc]

    @property
    def num_locations(self) -> int:
        return sum(g.num_locations for g in self.generators)

    @property
    def num_modules(self) -> int:
        return self.bank.num_modules

    def location_table(self) -> Tensor:
        """``(L, 6)`` long: model, target (index into ``targets[model]``), gate, kpos, in_block, out_block."""
        return torch.cat([g.layout.cpu() for g in self.generators])

    def alignment(self) -> Tensor:
        """``(L,)`` incumbent hypermodule of every location (psi0)."""
        return torch.cat([g.psi0 for g in self.generators])

    def candidates(self) -> Tensor:
        """``(L, lambda+1)`` current soft-merge candidates."""
        return torch.cat([g.cand for g in self.generators])

    def scores(self) -> list[nn.Parameter]:
        return [g.scores for g in self.generators]

    def param_groups(self, lr: float, **kwargs: Any) -> list[dict[str, Any]]:
        """Optimizer groups: everything at ``lr``; the soft-merge scores at ``config.lr_scores`` (S.3)."""
        score_ids = {id(s) for s in self.scores()}
        rest = [p for p in self.parameters() if id(p) not in score_ids]
        return [{"params": rest, "lr": lr, **kwargs},
                {"params": self.scores(), "lr": self.config.lr_scores, **{**kwargs, "weight_decay": 0.0}}]

    def _split(self, t: Tensor) -> list[Tensor]:
        return list(torch.split(t, [g.num_locations for g in self.generators]))

    # -- Alg. 2 ---------------------------------------------------------------------------------
    def begin_generation(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reset scores (and their optimizer state), sample challengers, switch to the soft merge (Eq. 8)."""
        cand = self.search.propose(self.alignment())
        s0 = self.search.initial_scores(self.config.alpha, dtype=self.bank.H.dtype).to(self.bank.H.device)
        for g, c, s in zip(self.generators, self._split(cand), self._split(s0)):
            g.set_alignment(c[:, 0], c, merging=True)
            g.reset_scores(s, optimizer)

    def end_generation(self) -> Tensor:
        """Select each location's incumbent by its summed beliefs; back to Eq. 5. Returns psi0 (L,)."""
        scores = torch.cat([s.detach() for s in self.scores()])
        psi0 = self.search.select(self.candidates(), scores)
        self.fix_alignment(psi0)
        return psi0

    def fix_alignment(self, psi0: Tensor | None = None) -> None:
        """Use Eq. 5 with ``psi0`` (default: the current incumbents) from now on."""
        psi0 = self.alignment() if psi0 is None else psi0
        for g, p in zip(self.generators, self._split(psi0)):
            g.set_alignment(p, None, merging=False)

    def stats(self) -> dict[str, int]:
        """Generation, active hypermodules and parameter counts (plain / compact / original weights)."""
        psi0, (K, c, blk) = self.alignment(), (self.num_modules, self.config.context, self.config.block)
        original = sum(math.prod(s.shape) for g in self.generators for s in g.writer.slots)
        return {"generation": self.search.generation, "active": accounting.active_modules(psi0, K),
                "params": accounting.parameter_count(psi0, K, c, blk),
                "params_compact": accounting.parameter_count(psi0, K, c, blk, compact=True),
                "original_params": original}

    @torch.no_grad()
    def compact(self) -> int:
        """Fix the alignment and turn locations of hypermodules used < c times into plain blocks."""
        self.fix_alignment()
        mask = accounting.compact_mask(self.alignment(), self.num_modules, self.config.context)
        for g, m in zip(self.generators, self._split(mask)):
            g.compact(m)
        return int(mask.sum())


def _per_model(target_modules: Any, n: int) -> list[Patterns]:
    if target_modules is None or isinstance(target_modules, str):
        return [target_modules] * n
    tm = list(target_modules)
    if tm and all(x is None or not isinstance(x, str) for x in tm):
        if len(tm) != n:
            raise ConfigError(f"target_modules has {len(tm)} per-model entries for {n} models; give one per model")
        return tm
    return [tm] * n


def reparameterize(models: nn.Module | Sequence[nn.Module], *, block: tuple[int, int] | None = None,
                   context: int | None = None, target_modules: Any = None, config: MuirConfig | None = None,
                   init: str = "he", groups: Sequence[int] | None = None, **overrides: Any) -> MuirModels:
    """Generate the target weights of ``models`` (modified in place) from shared hypermodules.

    Args:
        models: one nn.Module per task (deep-copy them first to keep the originals).
        block, context, **overrides: override fields of ``config`` (default :class:`MuirConfig`).
        target_modules: fnmatch patterns on module names, for all models or one entry per model;
            ``None``: every Linear/Conv1d/Conv2d/LSTM weight except each model's first and last layer.
        init: ``"he"`` (Eq. 7: H ~ N(0, 2/m), constant z with He variance of each layer) or ``"copy"``
            (location l's hypermodule fibre 0 = the current block, z_l = e_0: outputs unchanged).
        groups: per-model universe id; locations only share hypermodules within a universe.
    """
    cfg = dataclasses.replace(config or MuirConfig(), **{k: v for k, v in
                                                        dict(block=block, context=context, **overrides).items()
                                                        if v is not None}).validate()
    if init not in ("he", "copy"):
        raise ConfigError(f"init must be 'he' or 'copy', got {init!r}")
    models = [models] if isinstance(models, nn.Module) else list(models)
    if not models:
        raise ConfigError("reparameterize needs at least one model")
    pats = _per_model(target_modules, len(models))
    found = [select_targets(m, p, i) for i, (m, p) in enumerate(zip(models, pats))]
    where = {(str(getattr(mod, pn).device), getattr(mod, pn).dtype) for f in found for _, mod, pn in f}
    if len(where) > 1:
        raise ConfigError(f"target weights are on different devices/dtypes {sorted(map(str, where))}; "
                          f"move every model to one device and dtype (model.to(device, dtype)) first")
    device, dtype = next(iter(where))
    plans = [[plan_weight(getattr(mod, pn).shape, gates_of(mod, pn), cfg.block, f"model {i} {name or 'root'}.{pn}")
              for name, mod, pn in f] for i, f in enumerate(found)]
    counts = [sum(p.count for p in ps) for ps in plans]
    bank = HypermoduleBank(sum(counts), cfg.context, cfg.block, device=device, dtype=dtype)
    tasks, offset = [], 0
    for i, (model, f, ps) in enumerate(zip(models, found, plans)):
        originals = [take_parameter(mod, pn) for _, mod, pn in f]
        layout = torch.cat([torch.cat([torch.tensor([i, j]).expand(p.count, 2), p.table], 1)
                            for j, p in enumerate(ps)])                                   # (L_t, 2 + 4)
        c = max(cfg.context, 1)                       # c = 0: the c = 1 magnitude scales the initial blocks
        z = torch.cat([torch.full((p.count, c), context_magnitude(math.prod(p.shape[1:]), cfg.block, c, cfg.z_rule))
                       for p in ps])                                                       # (L_t, c)
        gen = HyperGenerator(bank, [(mod, pn, p) for (_, mod, pn), p in zip(f, ps)], layout, offset, cfg.lam, z)
        if init == "copy":
            gen.load_blocks(gen.decompose_weights(originals, ps))
        tasks.append(GeneratedModel(model, gen))
        offset += counts[i]
    loc_groups = None
    if groups is not None:
        if len(groups) != len(models):
            raise ConfigError(f"groups has {len(groups)} entries for {len(models)} models; give one per model")
        loc_groups = torch.cat([torch.full((c,), int(g)) for c, g in zip(counts, groups)])
    search = AlignmentSearch(offset, lam=cfg.lam, p=cfg.p, eps=cfg.eps, selection=cfg.selection,
                             groups=loc_groups, seed=cfg.seed)
    targets = [[f"{name}.{pn}" if name else pn for name, _, pn in fm] for fm in found]
    return MuirModels(tasks, bank, cfg, search, targets)


@torch.no_grad()
def export(muir: MuirModels) -> list[nn.Module]:
    """Plain deep copies of the task models with the generated weights as ordinary Parameters.

    The exported weights are the generated ones bit for bit, so outputs are identical.
    """
    out = []
    for task in muir.tasks:
        gen: HyperGenerator = task.generator  # type: ignore[assignment]
        names = {id(m): n for n, m in task.model.named_modules()}
        values = gen.materialize()
        model = copy.deepcopy(task.model)
        for slot, value in zip(gen.writer.slots, values):
            mod = model.get_submodule(names[id(slot.module)])
            mod.__dict__.pop(slot.name, None)
            mod.register_parameter(slot.name, nn.Parameter(value, requires_grad=True))
            if isinstance(mod, nn.RNNBase):
                mod._init_flat_weights()
        out.append(model)
    return out
