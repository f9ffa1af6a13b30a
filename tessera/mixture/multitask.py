"""The four multi-task co-training variants of paper 002, Table 8, as MixtureNet configurations.

* ``baseline``: a plain shared isometric body (K = L templates, fixed diag signature: layer l is
  template l), per-task heads and BN running statistics, BN gamma/beta shared.
* ``baseline_patches``: the same with per-task BN gamma/beta ("linear patches", Mudrakarta et al.).
* ``mixture``: K shared templates, learned per-task mixture weights, mixed BN gamma/beta.
* ``mixture_patches``: learned mixture weights, per-task BN gamma/beta.

>>> net = multitask_model("baseline", {"a": 10, "b": 10}, depth=3, channels=8, head_channels=(16, 16))
>>> net.num_templates, net.bn, net.signature("b")[0]
(3, 'layer', [0, 1, 2])
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from .network import MixtureNet

__all__ = ["VARIANTS", "multitask_model"]

VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {"signature": "diag", "bn": "layer", "templates_per_layer": True},
    "baseline_patches": {"signature": "diag", "bn": "patch", "templates_per_layer": True},
    "mixture": {"bn": "mixed"},
    "mixture_patches": {"bn": "patch"},
}


def multitask_model(variant: str, tasks: Mapping[str, int | None] | Sequence[str], *, depth: int,
                    num_templates: int | None = None, **kwargs: Any) -> MixtureNet:
    """Build a Table 8 variant with :meth:`MixtureNet.from_isometric` (``kwargs`` go there).

    Baselines ignore ``num_templates`` (they use K = depth); mixtures need it. ``init="diag"`` gives
    the paper's "diag" mixture initialization.
    """
    if variant not in VARIANTS:
        raise ConfigError(f"unknown multi-task variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    spec = dict(VARIANTS[variant])
    per_layer = spec.pop("templates_per_layer", False)
    if per_layer:
        k = depth
        kwargs.pop("init", None)
    elif num_templates is None:
        raise ConfigError(f"variant {variant!r} needs num_templates (K)")
    else:
        k = num_templates
    return MixtureNet.from_isometric(tasks, num_templates=k, depth=depth, **spec, **kwargs)
