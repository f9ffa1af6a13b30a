"""README: "Nothing is ever pickled or torch.load-ed". With pickle and torch.load / torch.save replaced by
functions that fail the test, every kind of artifact makes a save / load round trip that restores it exactly:
an engine checkpoint (plain model; a MixtureNet; MUiR models with the search's state) and a compat component.
(The data readers' restricted unpickler for pickled releases is the documented exception and not used here.)"""
import pickle

import pytest
import torch
from torch import nn

from tessera.compat import load_component, save_component
from tessera.compat.components import components
from tessera.compat.models import build
from tessera.hyper import MuirSearch, reparameterize, search_steps
from tessera.mixture import MixtureNet
from tessera.train import Task, Trainer, TrainConfig


@pytest.fixture
def no_pickle(monkeypatch):
    calls: list[str] = []

    def refuse(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} was called; artifacts must be safetensors + JSON")
        return f
    for mod, names in ((pickle, ("load", "loads", "dump", "dumps")), (torch, ("load", "save")),
                       (torch.serialization, ("load", "save"))):
        for n in names:
            monkeypatch.setattr(mod, n, refuse(f"{mod.__name__}.{n}"))
    for n in ("Unpickler", "Pickler"):                  # classes (others subclass them), refusing to be built
        base, fail = getattr(pickle, n), refuse(f"pickle.{n}")
        monkeypatch.setattr(pickle, n, type(n, (base,), {"__init__": lambda self, *a, fail=fail, **k: fail()}))
    yield calls
    assert calls == []


def _cfg(steps, **kw):
    return TrainConfig(**{**dict(steps=steps, batch_size=8, seed=0, device="cpu", log_every=0, checkpoint_every=2,
                                 progress="off", optim={"name": "adam", "lr": 1e-2}, schedule={"name": "constant"}),
                          **kw})


def _same_state(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _round_trip(build_model, tasks, tmp_path, steps=4, **kw):
    """Train ``steps`` with checkpoints; a fresh model loads the checkpoint and equals the trained one; a
    run stopped half way and resumed ends equal to the straight one."""
    model = build_model()
    Trainer(model, tasks(model), _cfg(steps, **kw.get("cfg", {})), out_dir=tmp_path / "a",
            **kw.get("trainer", lambda m: {})(model)).fit()
    fresh = build_model()
    tr = Trainer(fresh, tasks(fresh), _cfg(steps, **kw.get("cfg", {})), out_dir=tmp_path / "a",
                 **kw.get("trainer", lambda m: {})(fresh))
    assert tr.load_checkpoint() == steps
    _same_state(fresh, model)
    half = build_model()
    Trainer(half, tasks(half), _cfg(steps, **kw.get("cfg", {})), out_dir=tmp_path / "b",
            **kw.get("trainer", lambda m: {})(half)).fit(steps=steps // 2)              # stopped half way
    again = build_model()
    Trainer(again, tasks(again), _cfg(steps, **kw.get("cfg", {})), out_dir=tmp_path / "b",
            **kw.get("trainer", lambda m: {})(again)).fit(resume=True)
    _same_state(again, model)
    return model


def _xy(n=16, d=4, classes=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def test_engine_checkpoint_of_a_plain_model(no_pickle, tmp_path):
    def build_model():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    _round_trip(build_model, lambda m: [Task("t", train=_xy())], tmp_path, cfg={"ema": {"enabled": True}})


def test_engine_checkpoint_of_a_mixture_net(no_pickle, tmp_path):
    def build_model():
        torch.manual_seed(0)
        return MixtureNet.from_isometric({"a": 3, "b": 3}, num_templates=2, depth=2, channels=8, patch=2,
                                         head_channels=(8, 8), dropout=0.0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 1, 8, 8, generator=g), torch.randint(0, 3, (16,), generator=g)

    def tasks(m):
        return [Task(t, train=(x, y), forward=lambda net, x, t=t: net(x, task=t)) for t in ("a", "b")]
    net = _round_trip(build_model, tasks, tmp_path, cfg={"multitask": "sum"})
    assert not torch.equal(net.stats.a, net.stats.b)                  # per-task statistics came back


def test_engine_checkpoint_of_muir_models_and_their_search(no_pickle, tmp_path):
    def build_model():
        torch.manual_seed(0)
        nets = [nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))
                for _ in range(2)]
        return reparameterize(nets, block=(4, 4), context=1, lam=1, n_init=1, n_iter=2, n_generations=2,
                              n_final=1, verbose=False)
    x, _ = _xy()
    y = x.sum(1, keepdim=True)

    def tasks(m):
        return [Task(f"t{i}", train=(x, y), loss="mse", forward=lambda m, x, i=i: m[i](x)) for i in range(2)]
    steps = search_steps(build_model().config)
    searches = []

    def trainer_kw(m):
        searches.append(MuirSearch(m))
        return {"param_groups": m.param_groups(lr=1e-2), "callbacks": [searches[-1]]}
    muir = _round_trip(build_model, tasks, tmp_path, steps=steps, cfg={"multitask": "sum"}, trainer=trainer_kw)
    straight, resumed = searches[0], searches[-1]
    assert resumed.history == straight.history and len(straight.history) == 2
    assert torch.equal(resumed.muir.alignment(), muir.alignment())


def test_compat_component_round_trip(no_pickle, tmp_path):
    torch.manual_seed(0)
    net = build("resnet", width=4)
    x = torch.rand(4, 1, 16, 16)
    net(x)                                                            # non-trivial BN statistics
    e, h = components(net.eval(), "stage2", (1, 16, 16), [str(i) for i in range(10)],
                      {"net": "resnet", "kwargs": {"width": 4}, "split": "stage2"})
    save_component(tmp_path / "e", e.module, "extractor", e.interface)
    save_component(tmp_path / "h", h.module, "head", h.interface)
    e2, h2 = load_component(tmp_path / "e"), load_component(tmp_path / "h")
    _same_state(e2.module, e.module)
    _same_state(h2.module, h.module)
    with torch.no_grad():
        torch.testing.assert_close(h2.module.eval()(e2.module.eval()(x)), net.eval()(x), rtol=0, atol=0)
