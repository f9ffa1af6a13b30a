"""save_component replaces a component atomically: an exception or a SIGKILL at any point of a write leaves
the old component loadable and unchanged, and the next write leaves no temporary folder behind."""
import importlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from tessera.compat import load_component, save_component
from tessera.compat.components import components
from tessera.compat.models import build


def _component(seed):
    torch.manual_seed(seed)
    net = build("resnet", width=4)
    net(torch.rand(4, 1, 16, 16) + seed)                              # BN statistics differ per seed
    e, _ = components(net.eval(), "stage2", (1, 16, 16), [str(i) for i in range(10)],
                      {"net": "resnet", "kwargs": {"width": 4}, "split": "stage2"})
    return e


def _state(path):
    return {k: v.clone() for k, v in load_component(path).module.state_dict().items()}


def _equal(a, b):
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_an_exception_mid_write_keeps_the_old_component_and_leaves_no_temporary(tmp_path, monkeypatch):
    comp = importlib.import_module("tessera.compat.components")     # (tessera.compat.components is a function)
    old = _component(0)
    save_component(tmp_path / "e", old.module, "extractor", old.interface)
    before = _state(tmp_path / "e")
    new = _component(1)
    assert not _equal(before, {k: v for k, v in new.module.state_dict().items()})

    def broken(*a, **k):                                              # the weights are written, the manifest fails
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(comp, "save_json", broken)
    with pytest.raises(OSError, match="No space"):
        save_component(tmp_path / "e", new.module, "extractor", new.interface)
    assert sorted(os.listdir(tmp_path)) == ["e"]
    assert _equal(_state(tmp_path / "e"), before)


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import tessera.io as io
    import importlib
    comp = importlib.import_module("tessera.compat.components")
    from test_component_atomic import _component
    where = {where!r}
    if where == "inside":                         # the new weights are in the temporary folder
        comp.save_json = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    else:                                         # between moving the old folder aside and moving the new in
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith(".e.old"):
                os.kill(os.getpid(), signal.SIGKILL)
        io.os = type(os)("os_proxy")
        io.os.__dict__.update(os.__dict__)
        io.os.replace = replace
    new = _component(1)
    comp.save_component({path!r}, new.module, "extractor", new.interface)
""")


@pytest.mark.parametrize("where", ["inside", "between_renames"])
def test_a_sigkill_mid_write_keeps_the_old_component(tmp_path, where):
    old = _component(0)
    save_component(tmp_path / "e", old.module, "extractor", old.interface)
    before = _state(tmp_path / "e")
    script = KILLER.format(tests=os.path.dirname(__file__), where=where, path=str(tmp_path / "e"))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert _equal(_state(tmp_path / "e"), before)                    # the old component, unchanged
    new = _component(2)
    save_component(tmp_path / "e", new.module, "extractor", new.interface)   # the next write cleans up
    assert sorted(os.listdir(tmp_path)) == ["e"]
    assert _equal(_state(tmp_path / "e"), {k: v for k, v in new.module.state_dict().items()})
