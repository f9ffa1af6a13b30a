"""Template mixtures over a user's own model: its repeated blocks become K templates mixed per task.

``ModelMixture(model, "encoder.layers.*", num_templates=K, tasks=[...])`` takes the outermost modules whose
names match the pattern (:mod:`tessera.patterns`; they must share one architecture: same parameter names
and shapes), builds a :class:`~tessera.mixture.templates.TemplateBank` whose template k starts as the
model's block k (extra templates re-initialized), and from then on generates every selected block's
parameters as ``softmax(xi[task, l]) @ bank`` in ONE :func:`tessera.core.mix` call bound as views, exactly as
:class:`~tessera.mixture.network.MixtureNet` does (paper 002, §3.2). Everything else in the model stays as
it is and is shared by the tasks, except, per task: the mixture logits, BN running statistics (never shared
between tasks), and optionally a head (``head="fc"``: each task gets its own copy of that module).

The model's own ``forward`` runs unchanged, so blocks receive whatever arguments the model gives them
(attention masks, kwargs), and ``mm(*args, task=..., **kwargs)`` passes everything else to the model.
:meth:`ModelMixture.export` (or :func:`tessera.mixture.export`) returns the user's architecture with the
task's generated weights as plain Parameters: identical outputs, loadable into the original model.

>>> body = nn.Sequential(*[nn.Sequential(nn.Linear(8, 8), nn.ReLU()) for _ in range(4)])
>>> model = nn.Sequential(nn.Linear(3, 8), body, nn.Linear(8, 2))
>>> mm = ModelMixture(model, "1.*", num_templates=2, tasks=["a", "b"], head="2")
>>> x = torch.randn(5, 3)
>>> mm(x, task="b").shape, tuple(mm.coefficients("a").shape)            # (L, K) mixture weights
(torch.Size([5, 2]), (4, 2))
>>> plain = mm.export("b")                                            # an nn.Sequential again
>>> torch.equal(plain(x), mm(x, task="b"))
True
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..core import Slot, WeightGenerator, WeightWriter, bind, mix, take_parameter
from ..errors import ConfigError, ShapeError
from ..patterns import compile_patterns
from .signatures import init_logits
from .network import check_task
from .templates import TemplateBank, check_not_lazy, eval_once, flatten, restore_buffer

__all__ = ["ModelMixture", "select_blocks"]


def select_blocks(model: nn.Module, blocks: Any) -> list[str]:
    """Names of the outermost modules of ``model`` matching the ``blocks`` patterns (module order)."""
    pats = compile_patterns(blocks, "blocks")
    if pats is None:
        raise ConfigError("blocks is None; name the repeated blocks, e.g. 'encoder.layers.*' or 'layer3.*'")
    out: list[str] = []
    for name, _ in model.named_modules():
        if name and any(p.matches(name) for p in pats) and not any(name.startswith(o + ".") for o in out):
            out.append(name)
    if not out:
        kids = [n for n, _ in model.named_children()]
        raise ConfigError(f"blocks {[p.text for p in pats]} match no module of {type(model).__name__}; its children "
                          f"are {kids} (use a glob such as '{kids[0] if kids else 'body'}.*')")
    return out


class _TaskHead(nn.Module):
    """Stands where the model's head was: runs the active task's head."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()
        self.active = ""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.heads[self.active](*args, **kwargs)


class ModelMixture(WeightGenerator):
    """``model`` (modified in place: deep-copy it first to keep it) with template-mixture blocks.

    Args:
        model: any nn.Module.
        blocks: pattern(s) selecting the repeated blocks (outermost matches), e.g. ``"encoder.layers.*"``.
        num_templates: K >= 1.
        tasks: task names, or ``{name: head module or None}`` (None: a copy of the model's head).
        head: name of the module that becomes per-task (None: the tasks share the whole rest of the model).
        init, init_std, seed: mixture-logit init (:func:`~tessera.mixture.signatures.init_logits`).
        mixed_norm: mix the blocks' normalization affine parameters too (else per layer, shared by tasks).
        example: one input for the model (a tensor, or ``(args tuple, kwargs dict)``): probed now so that
            blocks that do not fit fail here with one line rather than at the first forward.
    """

    def __init__(self, model: nn.Module, blocks: Any, *, num_templates: int,
                 tasks: Sequence[str] | Mapping[str, nn.Module | None] = ("main",), head: str | None = None,
                 init: str | Sequence[int] = "random", init_std: float = 1.0, seed: int = 0,
                 mixed_norm: bool = False, example: Any = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ConfigError(f"model must be an nn.Module, got {type(model).__name__}")
        self.block_names = select_blocks(model, blocks)
        mods = [model.get_submodule(n) for n in self.block_names]
        for n, m in zip(self.block_names, mods):
            check_not_lazy(m, f"block {n}")
        ref = [(k, tuple(p.shape)) for k, p in mods[0].named_parameters()]
        for n, m in zip(self.block_names[1:], mods[1:]):
            got = [(k, tuple(p.shape)) for k, p in m.named_parameters()]
            if got != ref:
                diff = next(((a, b) for a, b in zip(ref, got) if a != b), (ref[len(got):][:1], got[len(ref):][:1]))
                raise ShapeError(f"block {n} has parameter {diff[1]} where {self.block_names[0]} has {diff[0]}; "
                                 f"select blocks of one architecture (e.g. leave out a stage's downsampling block)")
        self.bank = TemplateBank(mods[0], num_templates, mixed_norm=mixed_norm)
        with torch.no_grad():
            for k, m in enumerate(mods[:num_templates]):   # template k starts as the model's block k
                self.bank.weight[k] = flatten(m, self.bank.layout).to(self.bank.weight)
        self.depth, self.num_templates = len(mods), num_templates
        self.init, self.init_std, self.seed = init, init_std, seed
        self.model = model
        self.blocks = mods
        row = self.bank.numel
        slots = []
        for l, blk in enumerate(mods):
            for s in self.bank.layout:
                m = blk.get_submodule(s.module)
                take_parameter(m, s.attr)
                slots.append(Slot(m, s.attr, torch.Size(s.shape), offset=l * row + s.offset))
        self.writer = WeightWriter(slots)
        self.head_name = head
        self.__dict__["_switch"] = self._install_head(head) if head is not None else None  # inside self.model
        self.mixture = nn.ParameterDict()
        self.stats = nn.Module()
        self._stat_slots, self.stats_init = self._take_stats()
        self.task = ""
        names = list(tasks.items()) if isinstance(tasks, Mapping) else [(t, None) for t in tasks]
        if not names:
            raise ConfigError("a ModelMixture needs at least one task; pass tasks=['name', ...]")
        self.__dict__["_template_head"] = self._switch.heads.pop("_original") if self._switch is not None else None
        for name, h in names:
            self.add_task(name, h)
        self.set_task(names[0][0])
        self.register_load_state_dict_post_hook(lambda mod, _: mod._bind_stats())
        if example is not None:
            args, kw = example if isinstance(example, tuple) else ((example,), {})
            self._probe(args, kw)

    # ------------------------------------------------------------------------------- building
    def _install_head(self, head: str) -> _TaskHead:
        parent, _, attr = head.rpartition(".")
        try:
            orig = self.model.get_submodule(head)
        except AttributeError:
            raise ConfigError(f"head {head!r} is not a module of {type(self.model).__name__}; name a module "
                              f"(e.g. the classifier) or pass head=None") from None
        if any(head == b or head.startswith(b + ".") or b.startswith(head + ".") for b in self.block_names):
            raise ConfigError(f"head {head!r} overlaps the mixed blocks; name a module outside them")
        own = {id(p) for p in orig.parameters()}
        shared = [n for n, p in self.model.named_parameters(remove_duplicate=False)
                  if id(p) in own and not (n == head or n.startswith(head + "."))]
        if shared:
            raise ConfigError(f"head {head!r} shares its weights with {shared[0]} (tied); per-task copies would untie "
                              f"them: pass head=None (tasks share the head) or untie the weights first")
        switch = _TaskHead()
        switch.heads["_original"] = orig
        setattr(self.model.get_submodule(parent) if parent else self.model, attr, switch)
        return switch

    def _take_stats(self) -> tuple[list[tuple[nn.Module, str, int, int]], Tensor]:
        """Every BN running statistic of the model (heads aside) moves into one per-task vector."""
        heads = {id(m) for m in self._switch.modules()} if self._switch is not None else set()
        slots, inits, off = [], [], 0
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and id(m) not in heads:
                for attr in ("running_mean", "running_var"):
                    t = m._buffers.pop(attr, None)
                    if t is not None:
                        slots.append((m, attr, off, t.numel()))
                        inits.append(t.detach().reshape(-1).clone())
                        off += t.numel()
        return slots, (torch.cat(inits) if inits else torch.zeros(0))

    def _probe(self, args: tuple, kwargs: dict) -> None:
        eval_once(self, args, kwargs, lambda msg: f"{type(self.model).__name__} with mixed blocks "
                  f"{self.block_names[0]}... fails on the example: {msg}; check that the selected blocks are "
                  f"interchangeable")

    # ---------------------------------------------------------------------------------- tasks
    @property
    def tasks(self) -> list[str]:
        return list(self.mixture.keys())

    def _check_task(self, name: str) -> str:
        return check_task(self.mixture, name)

    def add_task(self, name: str, head: nn.Module | None = None, *, from_task: str | None = None) -> None:
        """A new task: mixture logits (``init``, or a copy of ``from_task``'s), BN statistics, head."""
        if not isinstance(name, str) or not name.isidentifier() or name in self.mixture:
            raise ConfigError(f"task name {name!r} must be a new identifier (letters, digits, '_'); rename it")
        ref = self.bank.weight
        lg = (self.mixture[self._check_task(from_task)].detach().clone() if from_task is not None else
              init_logits(self.depth, self.num_templates, self.init, std=self.init_std, seed=self.seed + len(self.mixture)))
        self.mixture[name] = nn.Parameter(lg.to(ref.device, ref.dtype))
        st = getattr(self.stats, from_task) if from_task is not None else self.stats_init
        self.stats.register_buffer(name, st.to(ref.device, copy=True))
        if self._switch is not None:
            new = head if head is not None else copy.deepcopy(self._template_head)
            self._switch.heads[name] = new.to(ref.device)
        elif head is not None:
            raise ConfigError(f"task {name!r} got a head but the mixture has no per-task head; pass head='...' "
                              f"(the module to make per-task) when building the ModelMixture")

    def set_task(self, name: str) -> None:
        """Make ``name`` the active task (its statistics and head)."""
        self.task = self._check_task(name)
        if self._switch is not None:
            self._switch.active = name
        self._bind_stats()

    def _bind_stats(self) -> None:
        if self.task:
            st = getattr(self.stats, self.task)
            for m, attr, off, n in self._stat_slots:
                bind(m, attr, st.narrow(0, off, n))  # in-place BN updates write into stats[task]

    def _apply(self, fn: Any, recurse: bool = True) -> "ModelMixture":
        super()._apply(fn, recurse)
        self._bind_stats()
        return self

    # ----------------------------------------------------------------------------- generation
    def coefficients(self, task: str | None = None) -> Tensor:
        """Mixture weights ``softmax(xi[task])`` (L, K), with grad."""
        return self.mixture[self._check_task(task) if task else self.task].softmax(-1)

    def source(self, coeff: Tensor | None = None) -> Tensor:
        c = self.coefficients() if coeff is None else coeff
        return mix(self.bank.weight, c).reshape(-1)           # (L, K) @ (K, P) -> (L*P,)

    def refresh(self, coeff: Tensor | None = None) -> None:
        self.writer.write(self.source(coeff))

    def forward(self, *args: Any, task: str | None = None, coeff: Tensor | None = None, **kwargs: Any) -> Any:
        """The model's output for ``task`` (default: the active one); other arguments go to the model."""
        if task is not None and task != self.task:
            self.set_task(task)
        if coeff is not None and tuple(coeff.shape) != (self.depth, self.num_templates):
            raise ShapeError(f"coeff has shape {tuple(coeff.shape)}; expected (L, K) = ({self.depth}, {self.num_templates})")
        self.refresh(coeff)
        try:
            return self.model(*args, **kwargs)
        finally:
            self.release()

    @torch.no_grad()
    def export(self, task: str | None = None) -> nn.Module:
        """The user's architecture for ``task`` with plain Parameters: same outputs, loads into the original."""
        task = self._check_task(task) if task else self.task
        values = self.writer.tensors(self.source(self.coefficients(task).detach()))
        names = {id(m): n for n, m in self.model.named_modules()}
        st = getattr(self.stats, task)
        model = copy.deepcopy(self.model)
        for s, v in zip(self.writer.slots, values):
            m = model.get_submodule(names[id(s.module)])
            m.__dict__.pop(s.name, None)
            m.register_parameter(s.name, nn.Parameter(v.detach().clone()))
        for m, attr, off, n in self._stat_slots:
            restore_buffer(model.get_submodule(names[id(m)]), attr, st[off:off + n].view(getattr(m, attr).shape).clone())
        if self._switch is not None:
            parent, _, attr = self.head_name.rpartition(".")  # type: ignore[union-attr]
            head = copy.deepcopy(self._switch.heads[task])
            setattr(model.get_submodule(parent) if parent else model, attr, head)
        return model.train(self.model.training)
