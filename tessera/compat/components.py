"""Feature extractors and heads as stand-alone components: split, recombine, save, load.

A network splits at a named module into an *extractor* (everything up to and including that module)
and a *head* (everything after). Each part carries an :class:`Interface` (the feature shape it produces
or accepts, the classes a head predicts, how to rebuild its architecture); :func:`recombine` checks the
interfaces before joining parts, and :func:`save_component` / :func:`load_component` store one part as
``weights.safetensors`` + ``manifest.json``.

>>> import torch
>>> from tessera.compat.models import build
>>> net = build("resnet", num_classes=10, width=4).eval()
>>> ext, head = split_at(net, "stage2")
>>> x = torch.rand(2, 1, 16, 16)
>>> torch.equal(recombine(ext, head)(x), net(x))
True
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import CheckpointError, ShapeError
from ..io import atomic_dir, load_json, load_tensors, previous_dir, save_json, save_tensors
from .bn import batch_stats
from .validate import check_architecture, check_stored_tensors, validate_manifest

__all__ = ["Interface", "Component", "split_at", "recombine", "feature_shape", "components", "save_component",
           "load_component", "read_manifest", "check_fit", "MANIFEST", "WEIGHTS", "FORMAT"]

MANIFEST, WEIGHTS, FORMAT = "manifest.json", "weights.safetensors", "tessera.compat.component/1"
KINDS = ("extractor", "head")


@dataclass
class Interface:
    """What a component produces (extractor) or accepts (head).

    ``feature_shape``: per-example feature shape, e.g. ``(32, 4, 4)``; ``None`` in a head's shape means
    any size there (a head that pools globally accepts ``(32, None, None)``). ``classes``: the class names
    a head predicts (``None`` for extractors). ``architecture``: how to rebuild the module, e.g.
    ``{"net": "resnet", "kwargs": {...}, "split": "stage2"}`` (split None: the net's ``split_point``),
    used by :func:`load_component` when no ``build_fn`` is given. ``input_shape``: per-example input shape
    of an extractor (lets :func:`load_component` verify the rebuilt module's feature shape).
    """

    feature_shape: tuple[int | None, ...]
    classes: tuple[str, ...] | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        try:
            self.feature_shape = tuple(None if d is None else int(d) for d in self.feature_shape)
            if self.input_shape is not None:
                self.input_shape = tuple(int(d) for d in self.input_shape)
        except (TypeError, ValueError):
            raise ShapeError(f"Interface: feature_shape and input_shape must be sequences of ints (None: any size "
                             f"in a head), got {self.feature_shape!r} and {self.input_shape!r}") from None
        if self.classes is not None:
            self.classes = tuple(str(c) for c in self.classes)


@dataclass
class Component:
    """A module plus its kind ("extractor" | "head") and :class:`Interface`."""

    module: nn.Module
    kind: str
    interface: Interface

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ShapeError(f"component kind {self.kind!r} is not one of {KINDS}; pass kind='extractor' or 'head'")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _children_in_call_order(model: nn.Module, example: torch.Tensor | None) -> list[tuple[str, nn.Module]]:
    kids = list(model.named_children())
    if isinstance(model, nn.Sequential):
        return kids
    if example is None:
        raise ShapeError(f"{type(model).__name__} is not an nn.Sequential; pass example=<one input batch> so "
                         f"split_at can trace the order of its children and verify the split")
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, _a, n=n: order.append(n) if n not in order else None)
             for n, m in kids]
    try:
        with torch.no_grad(), batch_stats(model):  # no BatchNorm buffer changes while tracing
            model(example)
    finally:
        for h in hooks:
            h.remove()
    named = dict(kids)
    return [(n, named[n]) for n in order]


def split_at(model: nn.Module, name: str, example: torch.Tensor | None = None
             ) -> tuple[nn.Sequential, nn.Sequential]:
    """Split ``model`` after the child ``name`` (dotted names reach into nested ``nn.Sequential``).

    Returns ``(extractor, head)`` as ``nn.Sequential`` sharing the model's parameters. Works on any
    ``nn.Sequential`` and on modules whose forward is a chain of their children; for the latter pass
    ``example`` (one input batch): the children are ordered by tracing, and the split is verified to
    reproduce ``model(example)`` (a ShapeError otherwise, e.g. when forward calls functions between
    children). Tracing never changes BatchNorm buffers.
    """
    return _split(model, name, example, inner=False)


def _split(model: nn.Module, name: str, example: torch.Tensor | None, inner: bool
           ) -> tuple[nn.Sequential, nn.Sequential]:
    head_name, _, rest = name.partition(".")
    kids = _children_in_call_order(model, example)
    names = [n for n, _ in kids]
    if head_name not in names:
        raise ShapeError(f"cannot split at {name!r}: no child {head_name!r}; children are {names}")
    i = names.index(head_name)
    before, at, after = kids[:i], kids[i], kids[i + 1:]
    if rest:
        if not isinstance(at[1], nn.Sequential):
            raise ShapeError(f"cannot split inside {head_name!r} ({type(at[1]).__name__}); only nested "
                             f"nn.Sequential can be split, name a top-level child instead")
        inner_e, inner_h = _split(at[1], rest, None, inner=True)
        ext_kids = before + [(head_name, inner_e)]
        head_kids = ([(head_name, inner_h)] if len(inner_h) else []) + after
    else:
        ext_kids, head_kids = before + [at], after
    if not head_kids and not inner:
        raise ShapeError(f"cannot split at {name!r}: it is the last module, the head would be empty; split earlier")
    ext, head = nn.Sequential(OrderedDict(ext_kids)), nn.Sequential(OrderedDict(head_kids))
    ext.training = head.training = model.training  # new containers: only their own flag, children untouched
    if example is not None and not isinstance(model, nn.Sequential):
        with torch.no_grad(), batch_stats(model):
            same = torch.allclose(head(ext(example)), model(example), atol=1e-5)
        if not same:
            raise ShapeError(f"cannot split {type(model).__name__} at {name!r}: its forward is not a chain of its "
                             f"children; wrap it as nn.Sequential or split a nn.Sequential part of it")
    return ext, head


def components(net: nn.Module, split: str, input_shape: Sequence[int] | None, classes: Sequence[str],
               architecture: dict[str, Any] | None = None, example: torch.Tensor | None = None
               ) -> tuple[Component, Component]:
    """Split ``net`` at ``split`` into an extractor and a head :class:`Component` with their interfaces.

    ``example`` (one input batch) lets :func:`split_at` trace a net that is not an ``nn.Sequential`` and
    gives the input shape when ``input_shape`` is None.

    >>> from tessera.compat.models import build
    >>> e, h = components(build("resnet", width=4), "stage2", (1, 16, 16), [str(i) for i in range(10)])
    >>> e.interface.feature_shape, h.interface.classes[:2]
    ((16, 4, 4), ('0', '1'))
    """
    if input_shape is None:
        if example is None:
            raise ShapeError("components needs input_shape or example=<one input batch>; pass one of them")
        input_shape = tuple(example.shape[1:])
    ext, head = split_at(net, split, example)
    shape = feature_shape(ext, input_shape)
    arch = dict(architecture or {})
    return (Component(ext, "extractor", Interface(shape, None, arch, tuple(input_shape))),
            Component(head, "head", Interface(shape, tuple(classes), arch)))


def feature_shape(extractor: nn.Module, input_shape: Sequence[int]) -> tuple[int, ...]:
    """Per-example output shape of ``extractor`` on inputs of per-example shape ``input_shape``.

    >>> feature_shape(nn.Conv2d(1, 4, 3, stride=2, padding=1), (1, 16, 16))
    (4, 8, 8)
    """
    p = next(iter(extractor.parameters()), None)
    x = torch.zeros(2, *input_shape, device=p.device if p is not None else "cpu")
    modes = [(m, m.training) for m in extractor.modules()]
    extractor.eval()
    try:
        with torch.no_grad():
            out = extractor(x)
    finally:
        for m, was in modes:
            m.training = was
    return tuple(out.shape[1:])


def check_fit(produced: Sequence[int | None], accepted: Sequence[int | None], what: str = "") -> None:
    """Raise ShapeError unless a feature shape ``produced`` by an extractor fits one ``accepted`` by a head."""
    ok = len(produced) == len(accepted) and all(a is None or p is None or a == p
                                                 for p, a in zip(produced, accepted))
    if not ok:
        pre = f"{what}: " if what else ""
        raise ShapeError(f"{pre}extractor produces features {tuple(produced)} but the head accepts "
                         f"{tuple(accepted)}; recombine parts with the same feature shape or add an adapter")


def recombine(extractor: Component | nn.Module, head: Component | nn.Module) -> nn.Sequential:
    """``head(extractor(x))`` as ``nn.Sequential(extractor=..., head=...)``, after an interface check.

    Interfaces are checked when both parts are :class:`Component`; with plain modules the first forward
    raises a ShapeError naming both shapes if they do not fit.
    """
    if isinstance(extractor, Component) and isinstance(head, Component):
        if extractor.kind != "extractor" or head.kind != "head":
            raise ShapeError(f"recombine(extractor, head) got a {extractor.kind} and a {head.kind}; "
                             f"pass the extractor first and the head second")
        check_fit(extractor.interface.feature_shape, head.interface.feature_shape, "recombine")
    e = extractor.module if isinstance(extractor, Component) else extractor
    h = head.module if isinstance(head, Component) else head
    net = _Recombined(OrderedDict([("extractor", e), ("head", h)]))
    net.training = e.training  # a new container must not look like it switched its parts' mode
    return net


class _Recombined(nn.Sequential):
    """``nn.Sequential(extractor, head)`` whose forward turns a shape failure into a one-line ShapeError."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (N, classes)
        f = self.extractor(x)
        try:
            return self.head(f)
        except RuntimeError as e:
            if "shape" in str(e) or "size" in str(e) or "channels" in str(e):
                raise ShapeError(f"head does not accept the extractor's features of shape {tuple(f.shape[1:])} "
                                 f"({str(e).splitlines()[0]}); recombine parts with the same feature shape") from None
            raise


# ------------------------------------------------------------------------------------------ storage

def save_component(path_dir: str | os.PathLike, module: nn.Module, kind: str, interface: Interface,
                   **extra: Any) -> Path:
    """Write ``module``'s tensors (parameters and buffers) and a manifest into ``path_dir`` atomically.

    The manifest records the format, tessera version, kind, feature shape, classes, architecture, every
    tensor's shape and dtype, and ``extra`` (JSON-serialisable notes such as the training task).
    """
    from .. import __version__

    Component(module, kind, interface)  # validates kind
    sd = {k: v for k, v in module.state_dict().items()}
    info = asdict(interface)
    manifest = {"format": FORMAT, "tessera_version": __version__, "kind": kind,
                "feature_shape": list(info["feature_shape"]),
                "classes": None if interface.classes is None else list(interface.classes),
                "architecture": info["architecture"],
                "input_shape": None if interface.input_shape is None else list(interface.input_shape),
                "tensors": {k: {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
                            for k, v in sd.items()},
                **({"extra": extra} if extra else {})}
    with atomic_dir(path_dir) as d:
        save_tensors(d / WEIGHTS, sd, metadata={"format": FORMAT, "kind": kind})
        save_json(d / MANIFEST, manifest)
    return Path(path_dir)


def _readable(path_dir: str | os.PathLike) -> Path:
    """``path_dir``, or the old component that a write killed between its two renames left aside."""
    path = Path(path_dir)
    prev = previous_dir(path)
    return prev if not path.exists() and (prev / MANIFEST).is_file() else path


def read_manifest(path_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``manifest.json`` (format, version, kind) without loading any tensor."""
    from .. import __version__

    path = _readable(path_dir) / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{path_dir}: no {MANIFEST}; point at a folder written by save_component")
    m = load_json(path)
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a component manifest (format {m.get('format') if isinstance(m, dict) else None!r},"
                              f" expected {FORMAT!r}); point at a folder written by save_component")
    if m.get("tessera_version") != __version__:
        raise CheckpointError(f"{path}: written by tessera {m.get('tessera_version')}, this is tessera {__version__}; "
                              f"re-export the component with this version (or load it with the version that wrote it)")
    if m.get("kind") not in KINDS:
        raise CheckpointError(f"{path}: kind {m.get('kind')!r} is not one of {KINDS}; the manifest is corrupt")
    validate_manifest(m, path)
    return m


def _rebuild_from_manifest(manifest: dict[str, Any]) -> nn.Module:
    from .models import build

    arch = manifest.get("architecture") or {}
    if "net" not in arch:
        raise CheckpointError("manifest architecture lacks 'net'; pass build_fn=... that builds the module")
    kwargs = dict(arch.get("kwargs", {}))
    if manifest["kind"] == "head" and manifest.get("classes"):
        kwargs.setdefault("num_classes", len(manifest["classes"]))
    net = build(arch["net"], **kwargs)
    ext, head = split_at(net, arch.get("split") or net.split_point)  # type: ignore[arg-type]
    return ext if manifest["kind"] == "extractor" else head


def load_component(path_dir: str | os.PathLike, build_fn: Callable[[dict[str, Any]], nn.Module] | None = None,
                   *, kind: str | None = None, expect_shape: Sequence[int | None] | None = None,
                   map_location: str | torch.device = "cpu", allow_nonfinite: bool = False,
                   allow_cast: bool = False) -> Component:
    """Load a component saved by :func:`save_component`; everything is checked before the module changes.

    ``build_fn(manifest) -> nn.Module`` builds the empty module (default: rebuild from the manifest's
    ``architecture`` via :mod:`tessera.compat.models`, first on the meta device so that a corrupt size
    fails before any memory is allocated). ``kind`` / ``expect_shape``: expected kind and feature shape;
    a mismatch raises ShapeError. A manifest field of the wrong type, tensors that disagree with the
    manifest, missing, unexpected or mis-shaped tensors raise CheckpointError and leave the built module
    untouched; so do NaN / infinite weights (unless ``allow_nonfinite``) and weights of another dtype than
    the module's, e.g. float16 into float32 (unless ``allow_cast``).
    """
    m = read_manifest(path_dir)
    if kind is not None and m["kind"] != kind:
        raise ShapeError(f"{path_dir}: holds a {m['kind']}, expected a {kind}; load the matching part")
    if expect_shape is not None:
        prod, acc = (m["feature_shape"], expect_shape) if m["kind"] == "extractor" else (expect_shape, m["feature_shape"])
        check_fit(prod, acc, str(path_dir))
    tensors = load_tensors(_readable(path_dir) / WEIGHTS, device=map_location)
    check_stored_tensors(m, tensors, path_dir, allow_nonfinite)
    if build_fn is None:
        check_architecture(lambda: _rebuild_from_manifest(m), tensors, path_dir)
    module = (build_fn or _rebuild_from_manifest)(m)
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path_dir}: tensors do not match the module (missing {missing[:4]}, unexpected "
                              f"{unexpected[:4]}); build the architecture the manifest records")
    bad = [k for k in own if tuple(own[k].shape) != tuple(tensors[k].shape)
           or tuple(tensors[k].shape) != tuple(m["tensors"].get(k, {}).get("shape", tensors[k].shape))]
    if bad:
        k = bad[0]
        raise CheckpointError(f"{path_dir}: tensor {k!r} has shape {tuple(tensors[k].shape)}, the module expects "
                              f"{tuple(own[k].shape)} ({len(bad)} mismatched); build the architecture the manifest records")
    cast = [k for k in own if own[k].dtype != tensors[k].dtype]
    if cast and not allow_cast:
        k = cast[0]
        raise CheckpointError(f"{path_dir}: tensor {k!r} is stored as {str(tensors[k].dtype).replace('torch.', '')}, "
                              f"the module's is {str(own[k].dtype).replace('torch.', '')} ({len(cast)} such); loading "
                              "would change their precision silently (pass allow_cast=True to accept it)")
    if m["kind"] == "extractor" and m.get("input_shape"):
        check_fit(feature_shape(module, m["input_shape"]), m["feature_shape"], f"{path_dir} (rebuilt)")
    module.load_state_dict(tensors, strict=True)
    iface = Interface(tuple(m["feature_shape"]), None if m["classes"] is None else tuple(m["classes"]),
                      m.get("architecture") or {}, None if not m.get("input_shape") else tuple(m["input_shape"]))
    return Component(module, m["kind"], iface)
