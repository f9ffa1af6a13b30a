"""Checkpoints are all-or-nothing; NaN states are never saved."""
from __future__ import annotations

import math

import pytest
import torch

import tessera.train.checkpoint as ckmod
from tessera.errors import CheckpointError, TrainingError
from tessera.train import Trainer
from tessera.train.checkpoint import find_checkpoint, load_checkpoint
from train_helpers import tiny_setup


def _trainer(out, **kw):
    model, tasks, cfg = tiny_setup(**kw)
    return Trainer(model, tasks, cfg, out_dir=out)


def test_checkpoint_files_and_no_pickle(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(5)
    d = tmp_path / "ckpt"
    names = sorted(p.name for p in d.iterdir())
    assert names == ["ema.safetensors", "model.safetensors", "optim.safetensors", "rng.safetensors", "state.json"]
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5 and ck.state["config"]["train"]["optim"]["name"] == "rmsprop"
    assert any(k.endswith(".square_avg") for k in ck.optim)
    assert "torch.0" in ck.rng


def test_crash_mid_save_keeps_old_checkpoint(tmp_path, monkeypatch):
    tr = _trainer(tmp_path)
    tr.fit(5)
    before = {k: v.clone() for k, v in load_checkpoint(tmp_path).model.items()}
    tr.fit(8)  # final checkpoint at 8 is written normally
    tr2 = _trainer(tmp_path)
    tr2.load_checkpoint()
    assert tr2.step == 8
    # now crash while writing the checkpoint of step 10
    calls = {"n": 0}
    real = ckmod.atomic_write_bytes

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real(path, data)

    monkeypatch.setattr(ckmod, "atomic_write_bytes", flaky)
    with pytest.raises(OSError):
        tr2.fit(10)
    ck = load_checkpoint(tmp_path)
    assert ck.step == 8
    assert not any(p.name.startswith(".ckpt") for p in tmp_path.iterdir())  # temp dir cleaned up
    assert before.keys() == ck.model.keys()


def test_crash_between_renames_recovers_old(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(3)
    (tmp_path / "ckpt").rename(tmp_path / ".ckpt.old")  # the instant between atomic_dir's two renames
    assert find_checkpoint(tmp_path) == tmp_path / ".ckpt.old"
    tr2 = _trainer(tmp_path)
    assert tr2.load_checkpoint() == 3


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    model, tasks, cfg = tiny_setup(checkpoint_every=5)
    base = tasks[0].loss_fn

    def loss(o, y):
        v = base(o, y)
        return v * float("nan") if tr.step == 7 and o.requires_grad else v     # step index 7 (not the preflight)

    tasks[0].loss_fn = loss
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    with pytest.raises(TrainingError, match=r"step 7.*lower train\.optim\.lr.*step 5"):
        tr.fit()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 5
    assert all(torch.isfinite(v).all() for v in ck.model.values() if v.is_floating_point())
    assert not (tmp_path / "final.json").exists()


def test_nonfinite_weights_are_never_saved(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(4)
    with torch.no_grad():
        tr.model.fc.weight[0, 0] = math.inf
    with pytest.raises(TrainingError, match="not finite"):
        tr.save_checkpoint()
    ck = load_checkpoint(tmp_path)
    assert ck.step == 4 and torch.isfinite(ck.model["model.fc.weight"]).all()


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    tr = _trainer(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        tr.load_checkpoint()


def test_resume_with_mismatched_config_names_keys(tmp_path):
    _trainer(tmp_path).fit(3)
    model, tasks, cfg = tiny_setup()
    cfg.optim.lr = 0.5
    cfg.batch_size = 16
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"batch_size.*optim\.lr"):
        tr.load_checkpoint()
    # run-length keys may change
    model, tasks, cfg = tiny_setup(steps=60, log_every=7)
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path)
    assert tr.load_checkpoint() == 3


# ---------------------------------------------------------------- the module's functions, without a Trainer

def _model():
    return {"w": torch.arange(6.0).reshape(2, 3)}


def test_optimizer_state_round_trips_through_json_and_steps_like_the_original():
    """optimizer_tensors -> JSON -> load_optimizer: a fresh Adam then takes the same steps as the original
    (betas come back as a tuple, non-tensor per-parameter values as they were)."""
    import json
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.Adam([p], lr=0.1, betas=(0.8, 0.9))
    for _ in range(2):
        opt.zero_grad(), (p ** 2).sum().backward(), opt.step()
    opt.state[p]["count"] = 7                                          # a plain (non-tensor) state value
    tensors, meta = ckmod.optimizer_tensors(opt)
    assert sorted(tensors) == ["0.exp_avg", "0.exp_avg_sq", "0.step"] and meta["scalars"] == {"0": {"count": 7}}
    assert meta["class"] == "Adam" and meta["param_groups"][0]["betas"] == [0.8, 0.9]
    meta = json.loads(json.dumps(meta))
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = torch.optim.Adam([q], lr=0.5)
    ckmod.load_optimizer(opt2, {k: v.clone() for k, v in tensors.items()}, meta)
    g = opt2.param_groups[0]
    assert g["betas"] == (0.8, 0.9) and g["lr"] == 0.1 and opt2.state[q]["count"] == 7
    for o, x in ((opt, p), (opt2, q)):
        o.zero_grad(), (x ** 2).sum().backward(), o.step()
    assert torch.equal(p, q)
    with pytest.raises(CheckpointError, match=r"^checkpoint optimizer is Adam, the run uses SGD; resume with the same "
                                              r"train\.optim\.name$"):
        ckmod.load_optimizer(torch.optim.SGD([q], lr=0.1), tensors, meta)
    two = torch.optim.Adam([q, torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(CheckpointError, match=r"^checkpoint optimizer has different parameter groups than the model; "
                                              r"resume with the same model and optimizer config$"):
        ckmod.load_optimizer(two, tensors, meta)


def test_split_and_join_state_by_hand():
    a, b = torch.ones(2), torch.zeros(1)
    tensors, meta = ckmod.split_state({"x": [a, {"y": b}], 3: "s", "t": (1, None)}, prefix="m")
    assert tensors.keys() == {"m.x.0", "m.x.1.y"} and tensors["m.x.0"] is not a and torch.equal(tensors["m.x.0"], a)
    assert meta == {"x": [{"__tensor__": "m.x.0"}, {"y": {"__tensor__": "m.x.1.y"}}], "3": "s", "t": [1, None]}
    assert ckmod.split_state({"x": a})[0].keys() == {"x"}                 # no prefix: no leading dot
    assert ckmod.split_state([a])[1] == [{"__tensor__": "0"}] and ckmod.split_state({"k": 1})[1] == {"k": 1}
    back = ckmod.join_state(meta, tensors)
    assert torch.equal(back["x"][0], a) and torch.equal(back["x"][1]["y"], b) and back["3"] == "s"
    assert ckmod.join_state({"__tensor__": "k", "other": 1}, {}) == {"__tensor__": "k", "other": 1}   # not a marker
    with pytest.raises(CheckpointError, match=r"^checkpoint lacks tensor 'm\.x\.0' of a method's state; the checkpoint "
                                              r"is incomplete, resume from another one or start a new run$"):
        ckmod.join_state(meta, {"m.x.1.y": b})


def test_rng_states_round_trip_through_json():
    import json
    import random

    import numpy as np
    tensors, meta = ckmod.capture_rng()
    meta = json.loads(json.dumps(meta))
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    ckmod.restore_rng({k: v.clone() for k, v in tensors.items()}, meta)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2:] == again[2:]
    ckmod.restore_rng({}, {"python": meta["python"]})                  # python only: torch and numpy untouched
    t, n = torch.rand(1), np.random.rand()
    assert random.random() == first[2][0] and not torch.equal(t, first[0][:1]) and n != first[1][0]
    ckmod.restore_rng({"torch": tensors["torch"]}, None)
    assert torch.equal(torch.rand(3), first[0])


def test_save_verify_and_load_a_checkpoint_folder(tmp_path, monkeypatch):
    """Files written (empty rng / extra: none) in a ``.<name>.tmp-*`` sibling first, missing parents made, their
    digests by hand, the digest of state.json by hand, paths and numpy values in the state as JSON, the previous
    folder kept, and the one-line refusals of foreign folders."""
    import hashlib
    import json

    import numpy as np
    written = []
    real = ckmod.atomic_write_bytes
    monkeypatch.setattr(ckmod, "atomic_write_bytes", lambda path, data: (written.append(path), real(path, data))[1])
    ck = tmp_path / "out" / "run" / "ckpt"                             # parents made
    ckmod.save_checkpoint(ck, state={"step": 1}, model=_model(), rng={}, extra={})
    assert sorted(p.name for p in ck.iterdir()) == ["model.safetensors", "state.json"]
    assert written[0].parent.parent == ck.parent and written[0].parent.name.startswith(".ckpt.tmp-")
    ckmod.save_checkpoint(ck, state={"step": 2, "cfg": {"a": [1, 2]}, "out": tmp_path, "lr": np.float32(0.5)},
                          model=_model(), ema=_model(),
                          optim={"0.m": torch.ones(1)}, rng={"torch.0": torch.zeros(2, dtype=torch.uint8)},
                          extra={"e": torch.ones(2)})
    state = json.loads((ck / "state.json").read_text())
    body = {k: v for k, v in state.items() if k != "state_sha256"}
    assert state["state_sha256"] == hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                                   .encode()).hexdigest()
    assert state["format"] == "tessera.train/3" and state["cfg"] == {"a": [1, 2]}
    assert state["out"] == str(tmp_path) and state["lr"] == 0.5
    assert sorted(state["files"]) == sorted(f"{n}.safetensors" for n in ("model", "ema", "optim", "rng", "extra"))
    for name, info in state["files"].items():
        data = (ck / name).read_bytes()
        assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    loaded = load_checkpoint(tmp_path / "out" / "run")
    assert loaded.path == ck and loaded.step == 2 and loaded.fallback is None
    assert torch.equal(loaded.ema["w"], _model()["w"]) and torch.equal(loaded.extra["e"], torch.ones(2))
    assert loaded.rng.keys() == {"torch.0"} and loaded.optim.keys() == {"0.m"}
    prev = load_checkpoint(tmp_path / "out" / "run" / "ckpt.prev")      # a checkpoint folder itself
    assert prev.step == 1 and prev.ema is None and prev.optim == {} and prev.extra == {} and prev.rng == {}
    assert find_checkpoint(tmp_path / "out" / "run") == ck and find_checkpoint(tmp_path / "nothing") is None
    with pytest.raises(CheckpointError, match=r"^no checkpoint in .*nothing \(expected .*nothing/ckpt/state\.json\); "
                                              r"check the run directory, or start a new run without --resume$"):
        load_checkpoint(tmp_path / "nothing")
    for bad, msg in (({"step": 3}, r"state\.json: not a tessera checkpoint \(no 'format'\); the file is corrupt or "
                                   r"from another program$"),
                     ({"format": "tessera.train/9"}, r"state\.json: format 'tessera\.train/9' is not 'tessera\.train/3'; "
                                                     r"it was written by another tessera version, load it with that "
                                                     r"version$")):
        (ck / "state.json").write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=msg):
            ckmod.verify_checkpoint(ck)
    state.pop("files")
    state["state_sha256"] = ckmod._state_digest(state)
    (ck / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"state\.json: lists no model\.safetensors; the checkpoint is incomplete$"):
        ckmod.verify_checkpoint(ck)
    (ck / "state.json").write_text(json.dumps({"format": "tessera.train/1", "step": 5}))
    (ck / "model.safetensors").unlink()
    with pytest.warns(Warning), pytest.raises(CheckpointError, match=r"ckpt: model\.safetensors is missing; the "
                                                                      r"checkpoint is incomplete$"):
        ckmod.verify_checkpoint(ck)


def test_load_optimizer_state_names_with_dots_scalar_only_parameters_and_no_scalars():
    """Tensor keys are ``<param index>.<name>`` with any name (dots included); a parameter with only non-tensor
    state, and a structure without "scalars" (nothing but tensors), load too."""
    p, q = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p, q], lr=0.1)
    opt.state[p]["ema.avg"] = torch.ones(2)
    opt.state[q]["count"] = 3                                          # q: scalars only
    tensors, meta = ckmod.optimizer_tensors(opt)
    assert tensors.keys() == {"0.ema.avg"} and meta["scalars"] == {"1": {"count": 3}}
    new = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    ckmod.load_optimizer(new, tensors, meta)
    st = new.state_dict()["state"]
    assert torch.equal(st[0]["ema.avg"], torch.ones(2)) and st[1] == {"count": 3}
    new = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    ckmod.load_optimizer(new, tensors, {k: v for k, v in meta.items() if k != "scalars"})
    assert new.state_dict()["state"].keys() == {0}


def test_rng_round_trip_keeps_numpys_cached_gaussian():
    """numpy's legacy generator caches the second Box-Muller value (has_gauss = 1): a resumed run must draw it."""
    import json

    import numpy as np
    np.random.seed(0)
    np.random.randn()                                               # leaves the cached gaussian
    tensors, meta = ckmod.capture_rng()
    assert meta["numpy"][3] == 1
    meta = json.loads(json.dumps(meta))
    want = [np.random.randn() for _ in range(3)]
    np.random.seed(1)
    ckmod.restore_rng(tensors, meta)
    assert [np.random.randn() for _ in range(3)] == want
