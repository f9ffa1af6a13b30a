"""Which weights of a user's model MUiR generates: PEFT-like targeting, tied parameters, and a report.

:func:`find_targets` walks a model's modules. ``target_modules=None`` takes every layer of a default kind
(:mod:`.views`) except the model's first and last layer (its unshared adapters, paper 003 S.3); otherwise
the modules matching the patterns (:mod:`tessera.patterns`), minus ``exclude_modules``. Each weight is one
:class:`Target` per *Parameter*: a tensor reached from several modules (an LM decoder tied to its
embedding) is generated once and every owner sees it (``aliases``). Weights that cannot be cut into
``m x n`` blocks (too small, depthwise convs, kinds without a view, weight-norm'ed) are skipped and
reported; ``strict=True`` refuses them. The :class:`TargetReport` lists every decision and every pattern
that matched nothing, or only skipped modules.

>>> net = nn.Sequential(nn.Linear(8, 16), nn.Linear(16, 16), nn.Conv1d(16, 16, 3, groups=16), nn.Linear(16, 2))
>>> targets, report = find_targets(net, block=(8, 8), target_modules=["1", "2", "fc"])
>>> [t.name for t in targets], [(r.name, r.reason) for r in report.skipped()]
(['1.weight'], [('2.weight', 'depthwise (1 input per group) for 8x8 blocks')])
>>> for line in report.unmatched: print(line)
model 0: target_modules '2' matches only skipped weights (2: Conv1d)
model 0: target_modules 'fc' matches no module
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError, ShapeError
from ..patterns import NamePattern, compile_patterns
from .decompose import WeightPlan
from .views import WeightView, is_default_kind, plan_view, views_of

__all__ = ["Target", "ReportRow", "TargetReport", "find_targets", "check_models"]


@dataclass
class Target:
    """One generated Parameter: its first owner ``module.<attr>`` (``name``) and tied ``aliases``."""

    name: str
    module: nn.Module
    attr: str
    view: WeightView
    plan: WeightPlan
    aliases: list[tuple[str, nn.Module, str]] = field(default_factory=list)  # (name, module, attr)

    @property
    def fan_in(self) -> int:
        return self.view.fan_in(self.plan.shape)


@dataclass
class ReportRow:
    """One weight's fate: ``status`` is "targeted", "skipped", "excluded" or "adapter"."""

    model: int
    name: str
    kind: str
    shape: tuple[int, ...]
    status: str
    reason: str = ""
    locations: int = 0


@dataclass
class TargetReport:
    """Every targeting decision of a :func:`reparameterize` call; ``print(report)`` shows the table."""

    block: tuple[int, int]
    rows: list[ReportRow] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)

    def targeted(self) -> list[ReportRow]:
        return [r for r in self.rows if r.status == "targeted"]

    def skipped(self) -> list[ReportRow]:
        return [r for r in self.rows if r.status == "skipped"]

    def summary(self) -> str:
        """A few lines: counts per model, each skipped weight with its reason, each unmatched pattern."""
        lines = []
        for i in sorted({r.model for r in self.rows}):
            rows = [r for r in self.rows if r.model == i]
            n = {s: sum(r.status == s for r in rows) for s in ("targeted", "skipped", "excluded", "adapter")}
            label = {"skipped": "skipped", "excluded": "excluded", "adapter": "kept as adapters"}
            rest = ", ".join(f"{n[k]} {label[k]}" for k in label if n[k])
            lines.append(f"MUiR model {i}: {n['targeted']} weight(s) targeted = {sum(r.locations for r in rows)} "
                         f"locations of {self.block[0]}x{self.block[1]}" + (f"; {rest}" if rest else ""))
        lines += [f"  skipped model {r.model} {r.name} {r.shape}: {r.reason}" for r in self.skipped()]
        lines += [f"  {u}" for u in self.unmatched]
        return "\n".join(lines)

    def __str__(self) -> str:
        cols = [("model", [str(r.model) for r in self.rows]), ("weight", [r.name for r in self.rows]),
                ("kind", [r.kind for r in self.rows]), ("shape", [str(r.shape) for r in self.rows]),
                ("status", [r.status for r in self.rows]), ("blocks", [str(r.locations) for r in self.rows]),
                ("reason", [r.reason for r in self.rows])]
        width = [max([len(h), *map(len, v)]) for h, v in cols]
        lines = ["  ".join(h.ljust(w) for (h, _), w in zip(cols, width)).rstrip()]
        lines += ["  ".join(v[i].ljust(w) for (_, v), w in zip(cols, width)).rstrip() for i in range(len(self.rows))]
        return "\n".join(lines + self.unmatched)


def check_models(models: Any) -> list[nn.Module]:
    """The model list, or a one-line ConfigError (non-Modules, uninitialized lazy layers, shared weights)."""
    models = [models] if isinstance(models, nn.Module) else list(models) if isinstance(models, (list, tuple)) else models
    if not isinstance(models, list):
        raise ConfigError(f"models must be an nn.Module or a list of them, got {type(models).__name__}")
    if not models:
        raise ConfigError("reparameterize needs at least one model; pass a list of nn.Module")
    owner: dict[int, int] = {}
    for i, m in enumerate(models):
        if not isinstance(m, nn.Module):
            raise ConfigError(f"models[{i}] is a {type(m).__name__}, not an nn.Module; pass one nn.Module per task")
        for name, p in m.named_parameters():
            if isinstance(p, nn.parameter.UninitializedParameter):
                mod = name.rpartition(".")[0] or "root"
                raise ConfigError(f"model {i}: {mod} ({type(m.get_submodule(name.rpartition('.')[0])).__name__}) has "
                                  f"uninitialized lazy parameters; run one forward (model(example)) before reparameterize")
            j = owner.setdefault(id(p), i)
            if j != i:
                raise ConfigError(f"models {j} and {i} share the parameter {name} (one tensor); each task needs its own "
                                  f"weights: pass copy.deepcopy(model) for each task")
    return models


def _param(module: nn.Module, path: str) -> tuple[str, nn.Module, str]:
    owner_path, _, attr = path.rpartition(".")
    return owner_path, module.get_submodule(owner_path) if owner_path else module, attr


def _computed(owner: nn.Module, attr: str) -> str:
    """Why ``owner.<attr>`` is computed rather than stored ("" when it is a plain Parameter)."""
    if parametrize.is_parametrized(owner, attr):
        return "weight computed by a parametrization (e.g. weight_norm); remove_parametrizations() first"
    if f"{attr}_g" in owner._parameters and f"{attr}_v" in owner._parameters:
        return "weight computed by weight_norm (weight_g, weight_v); remove_weight_norm() first"
    return ""


def _unfit(module: nn.Module, view: WeightView, shape: torch.Size, block: tuple[int, int]) -> str:
    m, n = block
    if len(shape) < 2:
        return f"not a matrix (shape {tuple(shape)})"
    out, inp, _ = view.matrix(shape)
    groups = getattr(module, "groups", 1)
    if inp < m and isinstance(groups, int) and groups > 1 and inp == 1:
        return f"depthwise (1 input per group) for {m}x{n} blocks"
    if inp < m or out < n:
        return f"too small for the block ({inp} inputs -> {out} outputs < {m}x{n})"
    return ""


def _layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if views_of(m) is not None and any(True for _ in m.parameters())]


def find_targets(model: nn.Module, *, block: tuple[int, int], target_modules: Any = None,
                 exclude_modules: Any = None, strict: bool = False, model_index: int = 0,
                 report: TargetReport | None = None) -> tuple[list[Target], TargetReport]:
    """The weights of ``model`` to generate (module order) and the report (appended to ``report``)."""
    report = report if report is not None else TargetReport((int(block[0]), int(block[1])))
    pats = compile_patterns(target_modules, "target_modules")
    excl = compile_patterns(exclude_modules, "exclude_modules") or []
    mods = dict(model.named_modules())
    owners: dict[int, list[str]] = {}
    for path, p in model.named_parameters(remove_duplicate=False):
        owners.setdefault(id(p), []).append(path)
    layers = _layers(model)
    ends = {layers[0]: "first layer", layers[-1]: "last layer"} if pats is None and layers else {}
    if pats is None:
        chosen = [n for n in layers if is_default_kind(mods[n])]
        hits: dict[NamePattern, list[str]] = {}
    else:
        hits = {p: [n for n in mods if p.matches(n)] for p in pats}
        chosen = [n for n in mods if any(n in h for h in hits.values())]
    excluded = {n: p.text for p in reversed(excl) for n in mods if p.matches(n)}
    where = f"model {model_index}"
    targets: list[Target] = []
    seen: set[int] = set()
    fate: dict[str, list[str]] = {}  # module name -> status of each of its weights

    def row(mname: str, name: str, mod: nn.Module, shape: Any, status: str, reason: str = "", locs: int = 0) -> None:
        if status == "skipped" and strict:
            raise ShapeError(f"{where}: {name} {tuple(shape)} cannot be generated: {reason}; leave it out "
                             f"(exclude_modules) or pass strict=False to skip it")
        report.rows.append(ReportRow(model_index, name, type(mod).__name__, tuple(shape), status, reason, locs))
        fate.setdefault(mname, []).append(status)

    for mname in chosen:
        mod = mods[mname]
        views = views_of(mod)
        if views is None:
            mats = [a for a, p in mod._parameters.items() if p is not None and p.dim() >= 2]
            if mats:
                kind = type(mod).__name__
                row(mname, f"{mname or 'root'}.{mats[0]}", mod, mod._parameters[mats[0]].shape, "skipped",
                    f"kind not supported ({kind}); teach it with tessera.hyper.register_view({kind}, ...)")
            continue
        for view in views:
            opath, owner, attr = _param(model, f"{mname}.{view.param}" if mname else view.param)
            p = owner._parameters.get(attr)
            name = f"{opath}.{attr}" if opath else attr
            if p is None:
                why = _computed(owner, attr)
                if why:
                    row(mname, name, owner, getattr(owner, attr).shape, "skipped", why)
                continue
            if id(p) in seen:
                continue
            seen.add(id(p))
            users = owners[id(p)]
            user_mods = {u.rpartition(".")[0] for u in users}
            ex = sorted(u for u in user_mods if u in excluded)
            if ex and len(ex) < len(user_mods):
                raise ConfigError(f"{where}: {name} is one tensor with {', '.join(u for u in users if u != name)}, "
                                  f"but exclude_modules {excluded[ex[0]]!r} excludes only {ex[0] or 'root'}; "
                                  f"exclude all of its users or none (tied weights are generated once)")
            end = next((u for u in sorted(user_mods) if u in ends), None)
            if ex:
                row(mname, name, owner, p.shape, "excluded", f"exclude_modules {excluded[ex[0]]!r}")
            elif end is not None:
                row(mname, name, owner, p.shape, "adapter", f"{ends[end]} ({end or 'root'}): an unshared adapter")
            elif why := _unfit(owner, view, p.shape, block):
                row(mname, name, owner, p.shape, "skipped", why)
            else:
                plan = plan_view(view, p.shape, block, f"{where} {name}")
                aliases = [(u, *_param(model, u)[1:]) for u in users if u != name]
                targets.append(Target(name, owner, attr, view, plan, aliases))  # type: ignore[arg-type]
                tied = f"tied: also {', '.join(a for a, _, _ in aliases)}" if aliases else ""
                row(mname, name, owner, p.shape, "targeted", tied, plan.count)
    _unmatched(report, where, hits, fate, excl, mods)
    if not targets:
        what = "the default targets (all but the first/last layer)" if pats is None else \
            f"target_modules {[p.text for p in pats]}"
        mine = [r for r in report.rows if r.model == model_index and r.status == "skipped"]
        skipped = "; ".join(f"{r.name}: {r.reason}" for r in mine[:3])
        untried = [n for n in layers if n not in fate and views_of(mods[n])]   # layers not rejected above
        fix = [f"a smaller block than {block[0]}x{block[1]}"] if any("block" in r.reason for r in mine) else []
        fix += [f"other layers in target_modules: {untried[:8]}"] if untried else []
        raise ConfigError(f"{where}: {what} leave no weight to generate" + (f" (skipped {skipped})" if skipped else "")
                          + (f"; use {' or '.join(fix)}" if fix else "; name the layers to generate in target_modules "
                             "(the first and last layer are adapters by default) or register_view() their kind"))
    return targets, report


def _unmatched(report: TargetReport, where: str, hits: dict[NamePattern, list[str]], fate: dict[str, list[str]],
               excl: Sequence[NamePattern], mods: dict[str, nn.Module]) -> None:
    for p, names in hits.items():
        if not names:
            report.unmatched.append(f"{where}: target_modules {p.text!r} matches no module")
            continue
        got = [s for n in names for s in fate.get(n, [])]
        if "targeted" not in got:
            what = ("only modules without a weight matrix" if not got
                    else f"only {'/'.join(sorted(set(got)))} weights")
            kinds = sorted({type(mods[n]).__name__ for n in names})[:3]
            report.unmatched.append(f"{where}: target_modules {p.text!r} matches {what} ({', '.join(names[:3])}"
                                    f"{'...' if len(names) > 3 else ''}: {', '.join(kinds)})")
    for p in excl:
        if not any(p.matches(n) for n in mods):
            report.unmatched.append(f"{where}: exclude_modules {p.text!r} matches no module")
