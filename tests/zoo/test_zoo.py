"""Every zoo architecture through every method that applies to it (registry-driven, like timm's tests).

MUiR: reparameterize -> forward, gradients reach the bank, two search generations, safetensors round trip into
a fresh reparameterization, export with identical outputs, ties kept and loadable into the original.
Template mixtures over the repeated blocks: train-mode gradients reach the bank, export per task is the
user's architecture with identical outputs. Components: split / save / load / recombine identical.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from zoo_models import ZOO, Entry

from tessera.compat import Interface, components, load_component, recombine, save_component, split_at
from tessera import hyper, mixture
from tessera.hyper import reparameterize
from tessera.io import load_tensors, save_tensors
from tessera.mixture import ModelMixture


def _entry(name: str) -> Entry:
    e = ZOO[name]
    if e.needs:
        pytest.importorskip(e.needs)
    return e


def _make(e: Entry, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return e.build()


def _out(e: Entry, model: nn.Module, x: tuple) -> torch.Tensor:
    return e.output(model(*x))


def _muir(e: Entry, model: nn.Module):
    return reparameterize([model], context=2, lam=1, p=1.0, verbose=False, **e.muir)


def _names(kind: str) -> list[str]:
    return [n for n, e in ZOO.items() if kind == "muir" or getattr(e, kind) is not None]


def test_the_zoo_is_large_enough():
    written = [n for n, e in ZOO.items() if e.needs is None]
    assert len(written) >= 12 and {"hf_gpt2", "hf_bert"} <= set(ZOO)


@pytest.mark.parametrize("name", _names("muir"))
def test_muir(name, tmp_path):
    e = _entry(name)
    model, x = _make(e), e.inputs()
    original = copy.deepcopy(model)
    muir = _muir(e, model)
    assert muir.report.targeted() and not muir.report.unmatched, str(muir.report)
    out = _out(e, muir[0], x)
    out.float().square().mean().backward()
    grad = muir.bank.H.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0      # gradients reach the bank
    opt = torch.optim.Adam(muir.param_groups(lr=1e-2))
    for _ in range(2):                                                                   # two search generations
        muir.begin_generation(opt)
        opt.zero_grad()
        _out(e, muir[0], x).float().square().mean().backward()
        opt.step()
        muir.end_generation()
    assert muir.search.generation == 2 and muir.candidates().shape == (muir.num_locations, 2)
    muir.eval()
    with torch.no_grad():
        ref = _out(e, muir[0], x)
        save_tensors(tmp_path / "muir.safetensors", muir.state_dict())
        fresh = _muir(e, _make(e, seed=1))
        fresh.load_state_dict(load_tensors(tmp_path / "muir.safetensors"))
        assert torch.equal(_out(e, fresh.eval()[0], x), ref)                             # safetensors round trip
        plain = hyper.export(muir)[0].eval()
        gen, paths = muir[0].generator, {id(m): n for n, m in muir[0].model.named_modules()}
        for slot, t in zip(gen.writer.slots, gen.materialize()):                        # export: the generated
            name = ".".join(filter(None, (paths[id(slot.module)], slot.name)))            # weights, bit for bit
            assert torch.equal(plain.get_parameter(name), t), name
        out_plain = _out(e, plain, x)
        # the outputs agree to float rounding: fused CPU kernels (MKL / oneDNN: attention, GRU, LSTM) may take
        # another path for the generated tensors bound into the model than for separate parameters, so the last
        # bits can differ on some CPUs (up to 4.3e-7 seen for nn.TransformerEncoder; bitwise on others)
        torch.testing.assert_close(out_plain, ref, rtol=1e-5, atol=1e-6)
        assert not any(isinstance(v, torch.Tensor) and v.grad_fn is not None for v in plain.state_dict().values())
        for a, b in e.ties:
            assert plain.get_parameter(a) is plain.get_parameter(b), f"{a} and {b} are no longer tied"
        original.load_state_dict(plain.state_dict())                                    # loads into the original
        assert torch.equal(_out(e, original.eval(), x), out_plain)                      # same model, same bits
        for a, b in e.ties:
            assert original.get_parameter(a) is original.get_parameter(b)


@pytest.mark.parametrize("name", _names("blocks"))
def test_mixture_over_repeated_blocks(name):
    e = _entry(name)
    model, x = _make(e), e.inputs()
    original = copy.deepcopy(model)
    mm = ModelMixture(model, e.blocks, num_templates=2, tasks=["a", "b"], head=e.head, example=(x, {}))
    assert mm.depth >= 2 and mm.bank.weight.shape[0] == 2
    mm.train()
    for task in ("a", "b"):
        e.output(mm(*x, task=task)).float().square().mean().backward()
    assert mm.bank.weight.grad.abs().sum() > 0 and all(p.grad is not None for p in mm.mixture.values())
    mm.eval()
    with torch.no_grad():
        outs = {t: e.output(mm(*x, task=t)) for t in ("a", "b")}
        assert not torch.equal(outs["a"], outs["b"])                                     # tasks differ
        for task, ref in outs.items():
            plain = mixture.export(mm, task)
            assert type(plain) is type(original)
            assert torch.equal(_out(e, plain, x), ref)                                   # export: identical
            original.load_state_dict(plain.state_dict())
            assert torch.equal(_out(e, original.eval(), x), ref)


@pytest.mark.parametrize("name", _names("split"))
def test_components_split_save_load_recombine(name, tmp_path):
    e = _entry(name)
    net, (x,) = _make(e).eval(), e.inputs()
    ref = net(x)
    ext, head = components(net, e.split, None, ["c"] * ref.shape[1], example=x)
    assert torch.equal(recombine(ext, head)(x), ref)
    for part in (ext, head):
        save_component(tmp_path / part.kind, part.module, part.kind, part.interface)

    def rebuild(manifest):
        parts = split_at(_make(e, seed=1).eval(), e.split, x)
        return parts[0] if manifest["kind"] == "extractor" else parts[1]

    loaded = [load_component(tmp_path / k, rebuild) for k in ("extractor", "head")]
    assert isinstance(loaded[0].interface, Interface) and loaded[0].interface.feature_shape == ext.interface.feature_shape
    assert torch.equal(recombine(*loaded)(x), ref)


def test_readme_table_is_the_zoo():
    """The README's architecture x method table claims exactly what this registry tests."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = {m.group(1): [c.strip() for c in m.group(2).split("|")]
            for m in re.finditer(r"^\| `(\w+)`[^|]*\|(.*)\|$", text, flags=re.M)}
    assert set(rows) == set(ZOO), f"README rows {sorted(set(rows) ^ set(ZOO))} differ from the zoo"
    for name, e in ZOO.items():
        muir, blocks, split = rows[name]
        assert muir.startswith("yes") and (("tie kept" in muir) == bool(e.ties)), name
        assert (blocks == f"`{e.blocks}`") if e.blocks else blocks == "-", name
        assert split == f"`{e.split}`" if e.split else split.startswith("-"), name
