"""Every config value is validated when the file is read, with one line naming the key; a property test
over the whole schema: any generated config validates or raises ConfigError, and what validates trains."""
from __future__ import annotations

import dataclasses
import math
import os
import types
import typing

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.config import from_dict
from tessera.errors import ConfigError
from tessera.train import RunConfig, TaskConfig, TrainConfig, build_optimizer, load_run_config
from tessera.train.dist import select_device
from tessera.train.optim import lr_factor

BASE = ["tasks=[{name: m, dataset: mnist}]", "train.steps=10"]


@pytest.mark.parametrize("override, key, says", [
    ("train.optim.momentum=-1", "train.optim.momentum", "must be in [0, 1)"),
    ("train.optim.alpha=2", "train.optim.alpha", "must be in [0, 1)"),
    ("train.clip_grad=-1", "train.clip_grad", "must be >= 0"),
    ("tasks=[{name: m, dataset: mnist, weight: -1}]", "tasks[0].weight", "must be >= 0"),
    ("train.schedule.final_lr_frac=-5", "train.schedule.final_lr_frac", "must be in [0, 1]"),
    ("train.schedule.gamma=-3", "train.schedule.gamma", "must be in (0, 1]"),
    ("tasks=[{name: m, dataset: mnist, limit_eval: 0}]", "tasks[0].limit_eval", "must be >= 1"),
    ("tasks=[{name: m, dataset: mnist, limit_train: -5}]", "tasks[0].limit_train", "must be >= 1"),
    ("train.epochs=.inf", "train.epochs", "finite"),
    ("train.optim.lr=1e300", "train.optim.lr", "finite"),
    ("train.optim.lr=.nan", "train.optim.lr", "finite"),
    ("train.optim.betas=[2, 3]", "train.optim.betas[0]", "must be in [0, 1)"),
    ("train.threads=100000", "train.threads", "per CPU core"),
    ("train.device=tpu9", "train.device", "unknown device"),
    ("train.seed=99999999999999999999", "train.seed", "64 bits"),
    ("tasks=[{name: m, dataset: mnist, loss: hinge}]", "tasks[0].loss", "unknown loss"),
    ("tasks=[{name: m, dataset: mnist, metrics: [f1]}]", "tasks[0].metrics", "unknown metric"),
    ("tasks=[{name: m, dataset: mnist, num_classes: 0}]", "tasks[0].num_classes", "must be >= 1"),
    ("train.optim.name=sgd|train.optim.nesterov=true|train.optim.momentum=0", "train.optim.nesterov", "momentum > 0"),
])
def test_bad_values_are_refused_naming_the_key(override, key, says):
    with pytest.raises(ConfigError) as e:
        load_run_config(None, BASE + override.split("|"))
    msg = str(e.value)
    assert f"'{key}'" in msg and says in msg and "\n" not in msg


def test_duplicate_keys_non_utf8_and_folders_are_refused(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("tasks: [{name: m, dataset: mnist}]\ntrain: {steps: 3}\ntrain: {steps: 4}\n")
    with pytest.raises(ConfigError, match=r"key 'train' appears twice in one section \(lines 2 and 3\)"):
        load_run_config(p)
    p.write_text("tasks: [{name: m, dataset: mnist}]\ntrain: {steps: 3, steps: 4}\n")
    with pytest.raises(ConfigError, match="'steps' appears twice"):
        load_run_config(p)
    with pytest.raises(ConfigError, match="--set.*'steps' appears twice"):
        load_run_config(None, BASE + ["train={steps: 1, steps: 2}"])
    # a YAML merge key is not a duplicate: the explicit key overrides the merged one
    from tessera.config import strict_yaml_load
    assert strict_yaml_load("a: &b {x: 1, y: 2}\nc: {<<: *b, x: 3}")["c"] == {"x": 3, "y": 2}
    p.write_bytes(b"tasks: [{name: m, dataset: mnist}]\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9"):
        load_run_config(p)
    with pytest.raises(ConfigError, match="is a folder"):
        load_run_config(tmp_path)


def test_devices_must_exist():
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device 'tpu9'"):
        select_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no usable CUDA GPU"):
            select_device("cuda")
    else:
        n = torch.cuda.device_count()
        with pytest.raises(ConfigError, match=f"has {n} CUDA GPU"):
            select_device(f"cuda:{n}")


def test_threads_cap_follows_the_machine():
    cap = 4 * (os.cpu_count() or 1)
    assert TrainConfig(steps=1, threads=cap).threads == cap
    with pytest.raises(ConfigError, match=f"at most {cap}"):
        TrainConfig(steps=1, threads=cap + 1)


def test_programmatic_configs_are_checked_too():
    with pytest.raises(ConfigError, match="'batch_size': expected an integer"):
        TrainConfig(steps=3, batch_size=3.5)
    with pytest.raises(ConfigError, match=r"train\.optim\.lr.*finite"):
        TrainConfig(steps=3, optim={"lr": float("nan")})


# ----------------------------------------------------------------------------- property over the schema

_JUNK = st.one_of(st.none(), st.booleans(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                  st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-2**70, max_value=2**70))


def _rarely(other: st.SearchStrategy, usual: st.SearchStrategy) -> st.SearchStrategy:
    """``other`` about one time in twenty, else ``usual`` (hypothesis favours the ends of a range: 10 is
    neither)."""
    return st.integers(0, 19).flatmap(lambda i: other if i == 10 else usual)


def _mostly(good: st.SearchStrategy) -> st.SearchStrategy:
    """A plausible value about 19 times in 20, anything at all otherwise."""
    return _rarely(_JUNK, good)


def _number(meta: typing.Mapping[str, typing.Any], integer: bool) -> st.SearchStrategy:
    lo, hi = meta.get("ge", meta.get("gt")), meta.get("le", meta.get("lt"))
    edges = [v for v in (lo, hi) if v is not None] or [0]
    near = [e + d for e in edges for d in (-1, -0.5, 0, 0.5, 1)]    # just inside and just outside the bounds
    if integer:
        inside = st.integers(int(lo if lo is not None else -5), int(hi if hi is not None else 40))
        return _rarely(st.sampled_from([int(v) for v in near]), inside)
    inside = st.floats(lo if lo is not None else -10.0, hi if hi is not None else 10.0,
                       exclude_min="gt" in meta, exclude_max="lt" in meta)
    return _rarely(st.sampled_from([float(v) for v in near] + [1e300, -math.inf, math.nan]), inside)


def _value(tp: typing.Any, meta: typing.Mapping[str, typing.Any]) -> st.SearchStrategy:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*[_value(a, meta) for a in args if a is not type(None)], st.none())
    if origin is typing.Literal:
        return st.one_of(st.sampled_from(args), st.sampled_from(args), st.text(max_size=4))
    if dataclasses.is_dataclass(tp):
        return _section(tp)
    if origin in (list, tuple):
        inner = args[0] if args else typing.Any
        n = len(args) if origin is tuple and args and args[-1] is not Ellipsis else None
        return st.lists(_value(inner, meta), min_size=n or 0, max_size=n or 3)
    if tp is float:
        return _number(meta, integer=False)
    if tp is int:
        return _number(meta, integer=True)
    if tp is bool:
        return st.booleans()
    if tp is str:
        return st.sampled_from(["", "auto", "cpu", "cuda:7", "mnist", "cross_entropy", "accuracy", "x"])
    return st.dictionaries(st.sampled_from(["depth", "patch"]), st.integers(-2, 4), max_size=2)


def _section(cls: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _mostly(_value(hints[f.name], f.metadata)) for f in dataclasses.fields(cls)}
    required: dict[str, st.SearchStrategy] = {}
    if cls is RunConfig:   # mostly one plausible task, so that the rest of the schema gets exercised
        fields["tasks"] = _mostly(st.lists(_section(TaskConfig), min_size=1, max_size=2))
    if cls is RunConfig:
        required = {"tasks": fields.pop("tasks")}
    if cls is TaskConfig:
        required = {"name": _rarely(st.just(""), st.sampled_from(["a", "b"])), "dataset": st.just("mnist")}
        fields = {k: v for k, v in fields.items() if k not in required}
    if cls is TrainConfig:  # the schedule length: usually exactly one of steps / epochs
        required = {"steps": _mostly(st.integers(1, 50))}
        fields.pop("steps")
    return _rarely(st.fixed_dictionaries({**required, "unknown_key": _JUNK}, optional=fields),
                   st.fixed_dictionaries(required, optional=fields))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_section(RunConfig))
def test_any_config_validates_or_raises_config_error_and_what_validates_trains(data):
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as e:
        assert "\n" not in str(e)
        return
    t = cfg.train
    w = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer([w], t.optim)                  # every validated optimizer can be built and step
    total = t.steps if t.steps is not None else 50
    for step in sorted({0, 1, t.schedule.warmup_steps, total // 2, total - 1, total + 5}):
        f = lr_factor(t.schedule, step, total)
        assert math.isfinite(f) and 0.0 <= f <= 1.0       # never a negative or exploding LR
    w.grad = torch.ones(3)
    opt.step()
    assert torch.isfinite(w).all()
