"""Checks a stored component passes before anything is allocated or loaded (see ``load_component``).

* :func:`validate_manifest` -- every manifest field has the type and range it must have;
* :func:`check_stored_tensors` -- the weights file holds exactly the tensors the manifest lists, with
  the recorded shapes and dtypes, and (unless allowed) only finite values;
* :func:`check_architecture` -- the architecture the manifest records, built on the ``meta`` device
  (shapes only, no memory), has the stored tensors' shapes: a tampered ``width: 1e9`` fails here
  instead of allocating 36 GB.

>>> validate_manifest({"kind": "head", "feature_shape": [8, None], "classes": ["a"], "tensors": {}}, "m.json")
>>> validate_manifest({"kind": "head", "feature_shape": "8", "tensors": {}}, "m.json")
Traceback (most recent call last):
...
tessera.errors.CheckpointError: m.json: feature_shape must be a list of positive ints (or null), got '8'; the manifest is corrupt
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["validate_manifest", "check_stored_tensors", "check_architecture", "MAX_INPUT_NUMEL"]

MAX_INPUT_NUMEL = 2**26   # values per example of a recorded input shape (64M: far beyond any image here)


def _corrupt(path: Any, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}; the manifest is corrupt")


def _is_pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate_manifest(m: dict[str, Any], path: Any) -> None:
    """Raise CheckpointError naming the first manifest field of the wrong type or range."""
    fs = m.get("feature_shape")
    if not isinstance(fs, list) or not all(d is None or _is_pos_int(d) for d in fs):
        raise _corrupt(path, f"feature_shape must be a list of positive ints (or null), got {fs!r}")
    classes = m.get("classes")
    if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
        raise _corrupt(path, f"classes must be a list of names or null, got {classes!r}")
    ins = m.get("input_shape")
    if ins is not None:
        if not isinstance(ins, list) or not ins or not all(_is_pos_int(d) for d in ins):
            raise _corrupt(path, f"input_shape must be a list of positive ints or null, got {ins!r}")
        if math.prod(ins) > MAX_INPUT_NUMEL:
            raise _corrupt(path, f"input_shape {ins} has {math.prod(ins)} values per example (more than "
                                 f"{MAX_INPUT_NUMEL})")
    arch = m.get("architecture", {})
    if not isinstance(arch, dict) or not isinstance(arch.get("kwargs", {}), dict):
        raise _corrupt(path, f"architecture must be a mapping with a 'kwargs' mapping, got {arch!r}")
    if "net" in arch and not isinstance(arch["net"], str):
        raise _corrupt(path, f"architecture.net must be a network name, got {arch['net']!r}")
    if arch.get("split") is not None and not isinstance(arch["split"], str):
        raise _corrupt(path, f"architecture.split must be a module name, got {arch['split']!r}")
    tensors = m.get("tensors")
    if not isinstance(tensors, dict):
        raise _corrupt(path, f"tensors must map names to {{shape, dtype}}, got {type(tensors).__name__}")
    for k, info in tensors.items():
        shape = info.get("shape") if isinstance(info, dict) else None
        if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                   for d in shape) or not isinstance(info.get("dtype"), str)):
            raise _corrupt(path, f"tensor {k!r} must record a shape (list of ints >= 0) and a dtype, got {info!r}")


def check_stored_tensors(m: dict[str, Any], tensors: dict[str, torch.Tensor], path: Any,
                         allow_nonfinite: bool = False) -> None:
    """The weights file agrees with the manifest (names, shapes, dtypes); values are finite unless allowed."""
    listed = m["tensors"]
    if set(listed) != set(tensors):
        missing, extra = sorted(set(listed) - set(tensors)), sorted(set(tensors) - set(listed))
        raise CheckpointError(f"{path}: the weights file does not hold the tensors the manifest lists (missing "
                              f"{missing[:4]}, unlisted {extra[:4]}); the component is corrupt, export it again")
    for k, t in tensors.items():
        shape, dtype = listed[k]["shape"], listed[k]["dtype"]
        if list(t.shape) != shape or str(t.dtype).replace("torch.", "") != dtype:
            raise CheckpointError(f"{path}: tensor {k!r} is {str(t.dtype).replace('torch.', '')} {list(t.shape)}, "
                                  f"the manifest records {dtype} {shape}; the component is corrupt, export it again")
        if not allow_nonfinite and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{path}: tensor {k!r} holds NaN or infinite values; the component was saved "
                                  "from a diverged run (pass allow_nonfinite=True to load it anyway)")


def check_architecture(build: Callable[[], nn.Module], tensors: dict[str, torch.Tensor], path: Any) -> None:
    """Build the recorded architecture on the meta device (no memory) and compare its tensor shapes with
    the stored ones, so a corrupt size fails before anything is allocated."""
    try:
        with torch.device("meta"):
            skeleton = build()
    except NotImplementedError:      # an op without meta support: the later checks still run
        return
    except RuntimeError as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "overflow" in msg or "negative" in msg:
            raise CheckpointError(f"{path}: the recorded architecture cannot be built ({msg[:160]}); the "
                                  "manifest's architecture is corrupt, export the component again") from None
        return
    own = skeleton.state_dict()
    for k, t in tensors.items():
        if k in own and tuple(own[k].shape) != tuple(t.shape):
            raise CheckpointError(f"{path}: the recorded architecture makes tensor {k!r} of shape "
                                  f"{tuple(own[k].shape)}, the weights file holds {tuple(t.shape)}; the manifest's "
                                  "architecture is corrupt, export the component again")
