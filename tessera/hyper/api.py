"""``reparameterize`` ordinary models with shared hypermodules, search the alignment, ``export`` back.

>>> _ = torch.manual_seed(0)
>>> nets = [nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2))
...         for _ in range(2)]
>>> muir = reparameterize(nets, block=(8, 8), context=2, lam=1)   # middle Linear of each net: 2x2 blocks
MUiR model 0: 1 weight(s) targeted = 4 locations of 8x8; 2 kept as adapters
MUiR model 1: 1 weight(s) targeted = 4 locations of 8x8; 2 kept as adapters
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
import difflib
import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..core import GeneratedModel, take_parameter
from ..errors import ConfigError
from . import accounting
from .config import MuirConfig
from .grouped import GroupedTasks, Vectorize
from .hypermodules import HyperGenerator, HypermoduleBank, context_magnitude
from .search import AlignmentSearch
from .targets import TargetReport, check_models, find_targets

__all__ = ["reparameterize", "MuirModels", "export"]


class MuirModels(GroupedTasks):
    """Several task models sharing one :class:`HypermoduleBank`; ``muir[t]`` is task t's nn.Module.

    ``forward(inputs)`` runs every task on its input (a tuple is unpacked) and returns the list of
    outputs, so the whole joint model can be wrapped in DDP. The alignment (Alg. 2) is driven by
    :meth:`begin_generation` / :meth:`end_generation` (or :class:`~tessera.hyper.MuirSearch` on the engine).

    Many tasks: same-architecture tasks run as vectorized groups (``vectorize``, :mod:`.grouped`):
    ``muir(inputs)`` batches each group, ``muir.task_groups[g](x (T, B, ...))`` takes stacked inputs.

    DDP: the search draws from its own seeded generator and decides from the scores only, so every
    rank takes the same decisions. With the alignment fixed (n_init / n_final phases) the scores get
    no gradient: wrap with ``DDP(muir, find_unused_parameters=True)`` when training those phases.
    """

    report: TargetReport | None = None
    """What :func:`reparameterize` targeted, skipped and why (``print(muir.report)``)."""

    def __init__(self, tasks: Sequence[GeneratedModel], bank: HypermoduleBank, config: MuirConfig,
                 search: AlignmentSearch, targets: Sequence[Sequence[str]], vectorize: Vectorize = "auto"):
        super().__init__()
        self.tasks = nn.ModuleList(tasks)
        self.bank = bank
        self.config = config
        self.search = search
        self.targets = [list(t) for t in targets]     # per model: "module.param" of each decomposed weight
        self._link_alignment()
        self.vectorize(vectorize)
        self.register_load_state_dict_post_hook(GroupedTasks._leave_groups_after_load)

    # -- container ------------------------------------------------------------------------------
    def __getitem__(self, i: int) -> GeneratedModel:
        return self.tasks[i]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.tasks)

    def forward(self, inputs: Sequence[Any]) -> list[Any]:
        """Outputs of every task: ``[task_t(*inputs[t])]`` (a non-tuple input is passed as one argument)."""
        return self._run_groups(inputs)

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
        return self._psi.clone()

    def candidates(self) -> Tensor:
        """``(L, lambda+1)`` current soft-merge candidates."""
        return self._cand.clone()

    def scores(self) -> list[nn.Parameter]:
        return [g.scores for g in self.generators]

    def param_groups(self, lr: float, **kwargs: Any) -> list[dict[str, Any]]:
        """Optimizer groups: everything at ``lr``; the soft-merge scores at ``config.lr_scores`` (S.3).

        Vectorized tasks contribute their groups' stacked leaves (their own Parameters are frozen views)."""
        scores = [s for s in self.scores() if s.requires_grad] + self._group_scores()
        score_ids = {id(s) for s in scores}
        rest = [p for p in self.parameters() if id(p) not in score_ids and p.requires_grad]
        return [{"params": rest, "lr": lr, **kwargs},
                {"params": scores, "lr": self.config.lr_scores, **{**kwargs, "weight_decay": 0.0}}]

    def _split(self, t: Tensor) -> list[Tensor]:
        return list(torch.split(t, [g.num_locations for g in self.generators]))

    # -- Alg. 2 ---------------------------------------------------------------------------------
    def begin_generation(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reset scores (and their optimizer state), sample challengers, switch to the soft merge (Eq. 8)."""
        cand = self.search.propose(self._psi)
        s0 = self.search.initial_scores(self.config.alpha, dtype=self.bank.H.dtype).to(self.bank.H.device)
        self._set_alignment(cand[:, 0], cand, merging=True)
        self._reset_scores(s0, optimizer)

    def end_generation(self) -> Tensor:
        """Select each location's incumbent by its summed beliefs; back to Eq. 5. Returns psi0 (L,)."""
        psi0 = self.search.select(self._cand, self._scores_all())
        self.fix_alignment(psi0)
        return psi0

    def fix_alignment(self, psi0: Tensor | None = None) -> None:
        """Use Eq. 5 with ``psi0`` (default: the current incumbents) from now on."""
        self._set_alignment(self._psi.clone() if psi0 is None else psi0.to(self._psi.device), None, merging=False)

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
        """Fix the alignment and turn locations of hypermodules used < c times into plain blocks
        (the tasks leave their vectorized groups)."""
        self.vectorize(False)
        self.fix_alignment()
        mask = accounting.compact_mask(self.alignment(), self.num_modules, self.config.context)
        for g, m in zip(self.generators, self._split(mask)):
            g.compact(m)
        return int(mask.sum())


def _per_model(patterns: Any, n: int, what: str) -> list[Any]:
    """One pattern spec per model: the same for all, or a list with one entry (None or list) per model."""
    if isinstance(patterns, (list, tuple)) and patterns and all(x is None or isinstance(x, (list, tuple))
                                                               for x in patterns):
        if len(patterns) != n:
            raise ConfigError(f"{what} has {len(patterns)} per-model entries for {n} models; give one per model")
        return list(patterns)
    return [patterns] * n


def _config(config: MuirConfig | None, overrides: dict[str, Any]) -> MuirConfig:
    fields = [f.name for f in dataclasses.fields(MuirConfig)]
    for key in overrides:
        if key not in fields:
            near = difflib.get_close_matches(key, fields + ["target_modules", "exclude_modules", "strict"], 1)
            raise ConfigError(f"reparameterize got an unknown keyword {key!r}"
                              + (f"; did you mean {near[0]!r}?" if near else f"; MuirConfig fields are {fields}"))
    return dataclasses.replace(config or MuirConfig(),
                               **{k: v for k, v in overrides.items() if v is not None}).validate()


def reparameterize(models: nn.Module | Sequence[nn.Module], *, block: tuple[int, int] | None = None,
                   context: int | None = None, target_modules: Any = None, exclude_modules: Any = None,
                   strict: bool = False, verbose: bool = True, config: MuirConfig | None = None,
                   init: str = "he", groups: Sequence[int] | None = None, vectorize: Vectorize = "auto",
                   **overrides: Any) -> MuirModels:
    """Generate the target weights of ``models`` (modified in place) from shared hypermodules.

    Args:
        models: one nn.Module per task (deep-copy them first to keep the originals).
        block, context, **overrides: override fields of ``config`` (default :class:`MuirConfig`).
        target_modules: module names, globs or ``"re:<regex>"`` (:mod:`tessera.patterns`), for all models
            or one entry per model; ``None``: every layer of a default kind (:mod:`.views`: Linear, Conv,
            ConvTranspose, LSTM/GRU/RNN, MultiheadAttention, HF Conv1D) except each model's first and last layer.
        exclude_modules: patterns of modules to leave alone (same forms).
        strict: refuse (ShapeError) weights that cannot be cut into blocks instead of skipping them.
        verbose: print the targeting summary (:meth:`TargetReport.summary`) once; ``muir.report`` keeps it.
        init: ``"he"`` (Eq. 7: H ~ N(0, 2/m), constant z with He variance of each layer) or ``"copy"``
            (location l's hypermodule fibre 0 = the current block, z_l = e_0: outputs unchanged).
        groups: per-model universe id; locations only share hypermodules within a universe.
        vectorize: run same-architecture models as batched groups (:mod:`.grouped`): ``"auto"`` groups
            those that can be (no GRU / RNN, adapters, tied generated weights or floating-point buffers
            other than BatchNorm statistics) except LSTM models, True groups LSTM models too (step by
            step under ``vmap``) and refuses models that cannot be grouped, False keeps one model per call.

    A Parameter reached from several modules (tied weights) is generated once; all its users see it.
    """
    cfg = _config(config, dict(block=block, context=context, **overrides))
    if init not in ("he", "copy"):
        raise ConfigError(f"init must be 'he' or 'copy', got {init!r}")
    models = check_models(models)
    pats = _per_model(target_modules, len(models), "target_modules")
    excl = _per_model(exclude_modules, len(models), "exclude_modules")
    report = TargetReport(cfg.block)
    found = [find_targets(m, block=cfg.block, target_modules=p, exclude_modules=e, strict=strict, model_index=i,
                          report=report)[0] for i, (m, p, e) in enumerate(zip(models, pats, excl))]
    if verbose:
        print(report.summary(), flush=True)
    where = {(str(t.module._parameters[t.attr].device), t.module._parameters[t.attr].dtype) for f in found for t in f}
    if len(where) > 1:
        raise ConfigError(f"target weights are on different devices/dtypes {sorted(map(str, where))}; "
                          f"move every model to one device and dtype (model.to(device, dtype)) first")
    device, dtype = next(iter(where))
    counts = [sum(t.plan.count for t in f) for f in found]
    bank = HypermoduleBank(sum(counts), cfg.context, cfg.block, device=device, dtype=dtype)
    tasks, offset = [], 0
    for i, (model, f) in enumerate(zip(models, found)):
        originals = [take_parameter(t.module, t.attr) for t in f]
        for t in f:
            for _, mod, attr in t.aliases:
                take_parameter(mod, attr)
        layout = torch.cat([torch.cat([torch.tensor([i, j]).expand(t.plan.count, 2), t.plan.table], 1)
                            for j, t in enumerate(f)])                                    # (L_t, 2 + 4)
        c = max(cfg.context, 1)                       # c = 0: the c = 1 magnitude scales the initial blocks
        z = torch.cat([torch.full((t.plan.count, c), context_magnitude(t.fan_in, cfg.block, c, cfg.z_rule))
                       for t in f])                                                        # (L_t, c)
        gen = HyperGenerator(bank, [(t.module, t.attr, t.plan) for t in f], layout, offset, cfg.lam, z,
                             aliases=[[(m, a) for _, m, a in t.aliases] for t in f])
        if init == "copy":
            gen.load_blocks(gen.decompose_weights(originals, [t.plan for t in f]))
        tasks.append(GeneratedModel(model, gen))
        offset += counts[i]
    loc_groups = None
    if groups is not None:
        if len(groups) != len(models):
            raise ConfigError(f"groups has {len(groups)} entries for {len(models)} models; give one per model")
        loc_groups = torch.cat([torch.full((c,), int(g)) for c, g in zip(counts, groups)])
    search = AlignmentSearch(offset, lam=cfg.lam, p=cfg.p, eps=cfg.eps, selection=cfg.selection,
                             groups=loc_groups, seed=cfg.seed)
    muir = MuirModels(tasks, bank, cfg, search, [[t.name for t in f] for f in found], vectorize=vectorize)
    muir.report = report
    return muir


@torch.no_grad()
def export(muir: MuirModels) -> list[nn.Module]:
    """Plain deep copies of the task models with the generated weights as ordinary Parameters.

    The exported weights are the generated ones bit for bit, so outputs are identical; a tied weight is one
    Parameter in every module that shares it, so the export loads into the original (``load_state_dict``).
    """
    out = []
    grouped = {i: g.names for g, members in zip(muir.task_groups, muir.group_members) for i in members}
    for i, task in enumerate(muir.tasks):
        gen: HyperGenerator = task.generator  # type: ignore[assignment]
        names = {id(m): n for n, m in task.model.named_modules(remove_duplicate=False)}
        values = gen.materialize()
        model = copy.deepcopy(task.model)
        for n in grouped.get(i, []):                              # a vectorized task's own views are frozen
            if n.startswith("model."):
                model.get_parameter(n.removeprefix("model.")).requires_grad_(True)
        for slot, value in zip(gen.writer.slots, values):
            param = nn.Parameter(value, requires_grad=True)
            for module, attr in ((slot.module, slot.name), *slot.aliases):
                mod = model.get_submodule(names[id(module)])
                mod.__dict__.pop(attr, None)
                mod.register_parameter(attr, param)
                if isinstance(mod, nn.RNNBase):
                    mod._init_flat_weights()
        out.append(model)
    return out
