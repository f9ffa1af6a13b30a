"""What :class:`~tessera.hyper.MuirModels` adds for many tasks: one alignment store, vectorized groups.

*One alignment store.* Every generator's ``psi0 (L_t,)``, ``cand (L_t, lambda+1)`` and ``merging``
buffers are views of three muir-level tensors (``(L,)``, ``(L, lambda+1)``, ``(T,)``), so a search step
(propose, reset, select, fix) is a few tensor ops whatever the number of tasks or locations.

*Vectorized groups* (:mod:`.vectorize`): tasks with the same architecture run as one batched
:class:`TaskGroup`; ``muir(inputs)`` uses them when the inputs of a group have one shape, and
``muir.task_groups[g](x (T, B, ...))`` is the call for inputs that arrive stacked.
"""
from __future__ import annotations

from typing import Any, Literal, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..nn.rnn import lstms
from .hypermodules import HyperGenerator
from .vectorize import TaskGroup, signature, why_not_vectorizable

__all__ = ["GroupedTasks", "Vectorize"]

Vectorize = bool | Literal["auto"]
"""``"auto"``: group same-architecture tasks that can be grouped, except LSTM models (their group runs the
LSTM step by step under ``vmap``: correct, but 2-3x slower than separate fused LSTMs on a CPU); True: group
LSTM models too and refuse (ConfigError) a task that cannot be grouped; False: every task runs on its own."""


class GroupedTasks(nn.Module):
    """Mixin of :class:`~tessera.hyper.MuirModels` (needs ``tasks``, ``bank`` and ``search``)."""

    tasks: nn.ModuleList

    @property
    def generators(self) -> list[HyperGenerator]:
        return list(self._gens)

    # -- the alignment store -------------------------------------------------------------------
    def _link_alignment(self) -> None:
        gens: list[HyperGenerator] = [t.generator for t in self.tasks]  # type: ignore[misc]
        sizes = torch.tensor([g.num_locations for g in gens])
        self._gens, self._loc_start = gens, (torch.cumsum(sizes, 0) - sizes).tolist()
        psi = torch.cat([g.psi0 for g in gens])                                      # (L,)
        cand = torch.cat([g.cand for g in gens])                                     # (L, J)
        merging = torch.stack([g.merging.reshape(()) for g in gens])                 # (T,)
        off = 0
        for i, g in enumerate(gens):
            n = g.num_locations
            g._buffers["psi0"], g._buffers["cand"] = psi[off:off + n], cand[off:off + n]
            g._buffers["merging"] = merging[i]
            off += n
        self._psi, self._cand, self._merging = psi, cand, merging
        HyperGenerator.alignment_version += 1

    @torch.no_grad()
    def _set_alignment(self, psi0: Tensor, cand: Tensor | None, merging: bool) -> None:
        if self._psi.data_ptr() != self.generators[0].psi0.data_ptr():
            self._link_alignment()                                                   # a deepcopy / load broke the views
        self._psi.copy_(psi0)
        self._cand.copy_(psi0[:, None].expand_as(self._cand) if cand is None else cand)
        self._merging.fill_(merging)
        HyperGenerator.alignment_version += 1

    def _apply(self, fn: Any, recurse: bool = True) -> "GroupedTasks":
        super()._apply(fn, recurse)
        self._link_alignment()
        return self

    # -- vectorized groups ---------------------------------------------------------------------
    @property
    def task_groups(self) -> list[TaskGroup]:
        """The vectorized groups (``muir.task_groups[g].members`` are tasks ``muir.group_members[g]``)."""
        return list(self.groups)  # type: ignore[arg-type]

    def vectorize(self, mode: Vectorize = "auto") -> list[list[int]]:
        """(Re)build the vectorized groups; returns the task indices of each group (see :data:`Vectorize`)."""
        for g in (self.groups if "groups" in self._modules else []):
            g.unlink()
        self.groups = nn.ModuleList()
        self.group_members: list[list[int]] = []
        if mode is False:
            return []
        if mode not in (True, "auto"):
            raise ConfigError(f"vectorize must be True, False or 'auto', got {mode!r}")
        buckets: dict[Any, list[int]] = {}
        for i, t in enumerate(self.tasks):
            why = why_not_vectorizable(t)
            if why is not None:
                if mode is True:
                    raise ConfigError(f"vectorize=True but task {i} cannot be vectorized: {why}; "
                                      f"use vectorize='auto' (it runs on its own) or False")
                continue
            if mode == "auto" and lstms(t):
                continue                                       # step-by-step under vmap: slower on CPU
            buckets.setdefault(signature(t), []).append(i)
        for members in buckets.values():
            if len(members) >= 2:
                grp = TaskGroup([self.tasks[i] for i in members], persistent=False)
                grp.alignment_source = (self, torch.cat([self._task_locations(i) for i in members]))
                self.groups.append(grp)
                self.group_members.append(members)
        return [list(m) for m in self.group_members]

    def _leave_groups_after_load(self, incompatible_keys: Any = None) -> None:
        """A loaded checkpoint can give tasks parallel adapters or compacted locations, which the batched
        forward of a group does not apply: such tasks leave their groups (as :meth:`vectorize` "auto")."""
        grouped = [i for members in self.group_members for i in members]
        if any(why_not_vectorizable(self.tasks[i]) is not None for i in grouped):
            self.vectorize("auto")

    def _run_groups(self, inputs: Sequence[Any]) -> list[Any]:
        outs: list[Any] = [None] * len(self.tasks)
        for grp, members in zip(self.task_groups, self.group_members):
            xs = [inputs[i] for i in members]
            if all(isinstance(x, Tensor) and x.shape == xs[0].shape for x in xs):
                for i, o in zip(members, grp(torch.stack(xs)).unbind(0)):
                    outs[i] = o
        for i, (t, x) in enumerate(zip(self.tasks, inputs)):
            if outs[i] is None:
                outs[i] = t(*x) if isinstance(x, tuple) else t(x)
        return outs

    def _group_scores(self) -> list[nn.Parameter]:
        return [s for g in self.task_groups if (s := g._stack("generator.scores")) is not None]

    def _task_locations(self, i: int) -> Tensor:
        off = self._loc_start[i]
        return torch.arange(off, off + self._gens[i].num_locations)

    @torch.no_grad()
    def _scores_all(self) -> Tensor:
        """``(L, lambda+1)`` current scores of every location (grouped tasks: one copy per group)."""
        out = torch.empty(self._cand.shape, dtype=self._gens[0].scores.dtype, device=self._cand.device)
        done: set[int] = set()
        for grp, members in zip(self.task_groups, self.group_members):
            st = grp._stack("generator.scores")
            if st is not None:
                out[grp.alignment_source[1].to(out.device)] = st.detach().reshape(-1, out.shape[1])
                done.update(members)
        for i, g in enumerate(self._gens):
            if i not in done:
                out[self._loc_start[i]:self._loc_start[i] + g.num_locations] = g.scores.detach()
        return out

    @torch.no_grad()
    def _reset_scores(self, s0: Tensor, optimizer: torch.optim.Optimizer | None) -> None:
        """Scores <- ``s0 (L, J)`` (grouped: one copy per group) and their optimizer state dropped."""
        done: set[int] = set()
        for grp, members in zip(self.task_groups, self.group_members):
            st = grp._stack("generator.scores")
            if st is None:
                continue
            locs = grp.alignment_source[1]
            st.copy_(s0[locs.to(s0.device)].view_as(st))
            if optimizer is not None:
                optimizer.state.pop(st, None)
            done.update(members)
        for i, g in enumerate(self._gens):
            if i not in done:
                off = self._loc_start[i]
                g.reset_scores(s0[off:off + g.num_locations], optimizer)

    def universe_rows(self) -> dict[int, Tensor]:
        """``{id(param): universe of each dim-0 row}`` for every trainable parameter (0-d: the whole
        tensor is one universe's): which search universe (``reparameterize(groups=)``) owns what."""
        out: dict[int, Tensor] = {}
        first = torch.tensor(self._loc_start).clamp(max=max(self.search.L - 1, 0))  # type: ignore[attr-defined]
        mg = self.search.groups[first]  # type: ignore[attr-defined]
        for grp, members in zip(self.task_groups, self.group_members):
            for st in grp.stacks:
                out[id(st)] = mg[members]                                             # (T,)
        bank = self.bank  # type: ignore[attr-defined]
        out[id(bank.H)] = self.search.module_groups  # type: ignore[attr-defined]
        for i, t in enumerate(self.tasks):
            for p in t.parameters():
                if p.requires_grad and id(p) not in out:
                    out[id(p)] = mg[i]
        return out
