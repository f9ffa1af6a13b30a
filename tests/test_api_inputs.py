"""Library entry points check their inputs before allocating or computing, with one-line TesseraErrors."""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from torch import nn

from tessera.errors import CheckpointError, ConfigError, DataError, ShapeError, TesseraError


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, TesseraError)
    return msg


# ----------------------------------------------------------------------------------------------- mix

def test_mix_checks_index_range_dtype_and_types():
    from tessera.core import mix
    bank = torch.eye(3)
    for idx, says in [([[0, 5]], "holds row 5, the bank has rows 0..2"), ([[0, -1]], "holds row -1")]:
        with pytest.raises(ShapeError) as e:
            mix(bank, torch.ones(1, 2), torch.tensor(idx))
        assert says in _one_line(e)
    with pytest.raises(ShapeError, match="int64"):
        mix(bank, torch.ones(1, 2), torch.tensor([[0.0, 1.0]]))
    with pytest.raises(ShapeError, match="must be tensors"):
        mix([[1.0]], torch.ones(1, 1))
    with pytest.raises(ShapeError, match="floating point"):
        mix(torch.ones(3, 2, dtype=torch.long), torch.ones(1, 3))
    # the check is remembered for an unchanged index tensor, and redone once it is modified in place
    idx = torch.tensor([[0, 2]])
    assert torch.equal(mix(bank, torch.ones(1, 2), idx), torch.tensor([[1.0, 0.0, 1.0]]))
    idx[0, 1] = 7
    with pytest.raises(ShapeError, match="holds row 7"):
        mix(bank, torch.ones(1, 2), idx)


# ------------------------------------------------------------------------------------------- models

def test_mixture_net_refuses_inputs_its_patch_conv_would_crop():
    from tessera.mixture import MixtureNet
    net = MixtureNet.from_isometric({"a": 10}, num_templates=2, depth=2, channels=8, head_channels=(8, 8), patch=4)
    assert net(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    for x, says in [(torch.randn(1, 1, 30, 30), "30x30 is not a multiple of patch=4"),
                    (torch.randn(1, 3, 28, 28), "expected input (N, 1, H, W)"),
                    (torch.randn(4, 784), "expected input (N, 1, H, W)"),
                    (torch.zeros(1, 1, 28, 28, dtype=torch.long), "floating-point")]:
        with pytest.raises(ShapeError) as e:
            net(x)
        assert says in _one_line(e)
    with pytest.raises(ConfigError, match="num_classes must be a positive int"):
        MixtureNet.from_isometric({"a": -3}, num_templates=2, depth=2, channels=8, head_channels=(8, 8), patch=4)


@pytest.mark.parametrize("kwargs, says", [
    (dict(width_mult=float("nan")), "width_mult must be a number"),
    (dict(width_mult=float("inf")), "width_mult must be a number"),
    (dict(head_channels=8), "head_channels must be (c1, c2)"),
    (dict(zz=1), "unexpected keyword argument 'zz'"),
    (dict(block_kwargs={"zz": 1}), "unexpected keyword argument 'zz'"),
])
def test_create_model_arguments(kwargs, says):
    from tessera.nn import create_model
    with pytest.raises(ConfigError) as e:
        create_model("isometric_small", depth=1, **kwargs)
    assert says in _one_line(e)


@pytest.mark.parametrize("kwargs", [dict(width=0), dict(width=-1), dict(num_classes=0), dict(width=2.5)])
def test_compat_build_sizes(kwargs):
    from tessera.compat import build
    with pytest.raises(ConfigError, match="must be a positive int"):
        build("resnet", **kwargs)


# ---------------------------------------------------------------------------------------- components

@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    from tessera.compat import build, components, save_component
    d = tmp_path_factory.mktemp("comp")
    torch.manual_seed(0)
    e, _ = components(build("resnet", width=4), "stage2", (1, 16, 16), [str(i) for i in range(10)],
                      architecture={"net": "resnet", "kwargs": {"width": 4}, "split": "stage2"})
    save_component(d / "ext", e.module, "extractor", e.interface)
    return d / "ext"


def _variant(stored, tmp_path, manifest=None, tensors=None):
    from tessera.io import load_tensors, save_tensors
    d = tmp_path / "v"
    shutil.copytree(stored, d)
    if manifest is not None:
        m = json.loads((d / "manifest.json").read_text())
        manifest(m)
        (d / "manifest.json").write_text(json.dumps(m))
    if tensors is not None:
        sd = load_tensors(d / "weights.safetensors")
        tensors(sd)
        save_tensors(d / "weights.safetensors", sd)
    return d


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["architecture"]["kwargs"].update(width=10**9), "the recorded architecture cannot be built"),
    (lambda m: m["architecture"]["kwargs"].update(width=10**5), "the recorded architecture makes tensor"),
    (lambda m: m["architecture"]["kwargs"].update(width=8), "the recorded architecture makes tensor"),
    (lambda m: m["architecture"]["kwargs"].update(width=-1), "width must be a positive int"),
    (lambda m: m.update(input_shape=[1, 100000, 100000]), "values per example"),
    (lambda m: m.update(input_shape=[1, -4, 16]), "input_shape must be a list of positive ints"),
    (lambda m: m.update(feature_shape="abc"), "feature_shape must be a list"),
    (lambda m: m.update(tensors=5), "tensors must map names"),
    (lambda m: m.update(classes=5), "classes must be a list"),
    (lambda m: m["architecture"].update(kwargs=[1]), "architecture must be a mapping"),
])
def test_corrupt_manifests_fail_before_anything_is_built(stored, tmp_path, edit, says):
    # width 1e9 / 1e5 would try to allocate 36 GB / 720 GB (a RuntimeError from the allocator); the one-line
    # error comes from the checks on the manifest and on the meta-device build, which allocate nothing
    from tessera.compat import load_component
    d = _variant(stored, tmp_path, manifest=edit)
    with pytest.raises(TesseraError) as e:
        load_component(d)
    assert says in _one_line(e)


def test_nonfinite_and_other_precision_weights_need_consent(stored, tmp_path):
    from tessera.compat import load_component, save_component
    key = "stem.0.weight"
    d = _variant(stored, tmp_path, tensors=lambda sd: sd[key].view(-1).__setitem__(0, math.nan))
    with pytest.raises(CheckpointError, match=f"tensor '{key}' holds NaN"):
        load_component(d)
    comp = load_component(d, allow_nonfinite=True)
    assert math.isnan(float(comp.module.state_dict()[key].view(-1)[0]))
    good = load_component(stored)
    half = tmp_path / "half"
    save_component(half, good.module.half(), "extractor", good.interface)   # an honest float16 export
    with pytest.raises(CheckpointError, match=r"stored as float16, the module's is float32.*allow_cast=True"):
        load_component(half)
    comp = load_component(half, allow_cast=True)
    assert comp.module.state_dict()[key].dtype == torch.float32
    lied = _variant(stored, tmp_path / "x", tensors=lambda sd: sd.update({key: sd[key].half()}))
    with pytest.raises(CheckpointError, match="the manifest records float32"):
        load_component(lied)


# ------------------------------------------------------------------------------------- data, training

def test_task_and_domain_data_are_checked():
    from tessera.adapt import Domain
    from tessera.train import Task
    x, y = torch.randn(8, 4), torch.arange(8) % 2
    with pytest.raises(ConfigError, match="the evaluation data is empty"):
        Task("t", train=(x, y), eval=(x[:0], y[:0]))
    with pytest.raises(ConfigError, match="got list"):
        Task("t", train=[1, 2, 3])
    with pytest.raises(TesseraError, match="NaN or infinite"):
        Domain("d", torch.full((4, 1, 8, 8), math.nan), torch.arange(4))


def test_trainer_preflight_names_the_task_before_any_step(tmp_path):
    from tessera.train import Task, Trainer, TrainConfig
    x, y = torch.randn(64, 4), torch.arange(64) % 3
    cfg = TrainConfig(steps=2, batch_size=8, progress="off", log_every=0, checkpoint_every=0)
    for model, says in [(nn.Linear(4, 2), "labels go up to 2 but the model has 2 outputs"),
                        (nn.Linear(5, 3), "the model cannot run on its inputs of shape (2, 4)")]:
        tr = Trainer(model, [Task("t", train=(x, y))], cfg)
        with pytest.raises(ConfigError) as e:
            tr.fit()
        assert says in _one_line(e) and tr.step == 0


def test_data_helpers_check_arguments():
    from tessera.data import resize, split_indices
    with pytest.raises(DataError, match="list of numbers"):
        split_indices(10, 2.0)
    with pytest.raises(DataError, match="n must be an int >= 0"):
        split_indices(-5, [0.5])
    with pytest.raises(DataError, match="size must be a positive int"):
        resize(torch.rand(2, 1, 8, 8), 0)


def test_reparameterize_takes_modules():
    from tessera.hyper import reparameterize
    with pytest.raises(ConfigError, match=r"models\[0\] is a str, not an nn.Module"):
        reparameterize(["x"], block=(2, 2), context=1)


def test_docstring_examples_of_the_checked_entry_points_run():
    import doctest
    import importlib
    for name in ["tessera.config", "tessera.registry", "tessera.core.mix", "tessera.core.cache", "tessera.train.lock",
                 "tessera.train.signals", "tessera.train.preflight", "tessera.train.dist", "tessera.compat.validate"]:
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, name
