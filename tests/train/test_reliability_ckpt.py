"""Checkpoints carry a sha256 per file; a damaged latest checkpoint falls back to the previous one with a
warning, never loads silently; stale temporaries of killed writes are removed; links are refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tessera
from tessera.errors import CheckpointError, TesseraWarning
from tessera.threads import intra_op_threads
from tessera.train import Trainer
from tessera.train.checkpoint import FORMAT, load_checkpoint, verify_checkpoint
from train_helpers import tiny_setup

UNDER_MUTMUT = "mutants" in Path(tessera.__file__).parts   # mutmut's trampolines add a frame to every call

FILES = ["model.safetensors", "ema.safetensors", "optim.safetensors", "rng.safetensors", "state.json"]


def _trainer(out, **kw):
    model, tasks, cfg = tiny_setup(**kw)
    return Trainer(model, tasks, cfg, out_dir=out)


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A run directory stopped at step 10, with ckpt/ (step 10) and ckpt.prev/ (step 5)."""
    out = tmp_path_factory.mktemp("tmpl") / "run"
    with intra_op_threads(1):      # as every test runs (module fixtures start before the suite's 1-thread one)
        tr = _trainer(out, checkpoint_every=5)
        tr.fit(10)
    del tr
    return out


@pytest.fixture
def run(template, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(template, out)
    return out


def _damage(path, how):
    data = path.read_bytes()
    if how == "flipped":                      # same size, different bytes (bit rot, a bad copy)
        i = len(data) - 3
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()


def test_layout_and_checksums(run):
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == sorted(FILES)
    state, blobs = verify_checkpoint(run / "ckpt")
    assert state["format"] == FORMAT and state["step"] == 10
    import hashlib
    for name, info in state["files"].items():      # independent recomputation of every recorded digest
        data = (run / "ckpt" / name).read_bytes()
        assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} and blobs[name] == data
    assert json.loads((run / "ckpt.prev" / "state.json").read_text())["step"] == 5


@pytest.mark.parametrize("how", ["flipped", "truncated", "deleted"])
@pytest.mark.parametrize("name", FILES)
def test_damaged_latest_falls_back_to_previous_with_a_warning(run, name, how):
    size = (run / "ckpt" / name).stat().st_size
    _damage(run / "ckpt" / name, how)
    with pytest.warns(TesseraWarning, match=r"ckpt is unusable.*using the previous checkpoint .*ckpt\.prev \(step 5\)") as w:
        ck = load_checkpoint(run)
    assert ck.step == 5 and ck.fallback is not None and ck.fallback[0] == run / "ckpt"
    assert name in ck.fallback[1] or "state.json" in ck.fallback[1]
    assert str(w[0].message) == (f"{run / 'ckpt'} is unusable: {ck.fallback[1]}; using the previous checkpoint "
                                 f"{run / 'ckpt.prev'} (step 5) instead")       # not quarantined: nothing moved
    assert (run / "ckpt").is_dir() and not (run / "ckpt.corrupt").exists()
    assert w[0].filename == __file__ or UNDER_MUTMUT                 # attributed to the caller's line
    if how == "truncated" and name != "state.json":
        assert ck.fallback[1] == (f"{run / 'ckpt' / name}: {size // 2} bytes, {size} were written; the file is "
                                  "truncated or altered")


def test_tampered_state_json_that_still_parses_is_caught(run):
    p = run / "ckpt" / "state.json"
    p.write_text(p.read_text().replace('"step": 10', '"step": 90'))
    with pytest.raises(CheckpointError, match="state.json: checksum mismatch"):
        verify_checkpoint(run / "ckpt")


def test_both_damaged_is_an_error_naming_both(run):
    (run / "ckpt" / "rng.safetensors").unlink()
    _damage(run / "ckpt.prev" / "optim.safetensors", "flipped")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(run)
    assert str(e.value) == (f"no usable checkpoint in {run}: {run / 'ckpt' / 'rng.safetensors'}: missing; the "
                            f"checkpoint is incomplete; {run / 'ckpt.prev' / 'optim.safetensors'}: sha256 mismatch; "
                            "the file is corrupt or was altered; start a new run in another --out")


def test_resume_after_fallback_equals_a_straight_run_and_quarantines_the_bad_one(run, tmp_path):
    ref = _trainer(tmp_path / "ref", checkpoint_every=5)
    ref.fit(20)
    _damage(run / "ckpt" / "optim.safetensors", "flipped")       # silently wrong before checksums
    (run / "ckpt.corrupt" / "older").mkdir(parents=True)           # an earlier quarantined checkpoint: replaced
    tr = _trainer(run, checkpoint_every=5)
    with pytest.warns(TesseraWarning, match="moved to ckpt.corrupt"):
        assert tr.load_checkpoint() == 5
    assert (run / "ckpt.corrupt").is_dir() and not (run / "ckpt").exists()
    assert not (run / "ckpt.corrupt" / "older").exists() and (run / "ckpt.corrupt" / "state.json").is_file()
    tr.fit(20)
    for k, v in ref.net.state_dict().items():
        assert torch.equal(v, tr.net.state_dict()[k]), k
    assert load_checkpoint(run).step == 20 and json.loads((run / "ckpt.prev" / "state.json").read_text())["step"] == 15


def test_older_formats_load_unverified_with_a_warning(run):
    p = run / "ckpt" / "state.json"
    state = json.loads(p.read_text())
    for k in ("files", "state_sha256"):
        state.pop(k)
    state["format"] = "tessera.train/2"
    p.write_text(json.dumps(state))
    with pytest.warns(TesseraWarning, match="without checksums") as w:
        assert load_checkpoint(run).step == 10
    assert w[0].filename == __file__ or UNDER_MUTMUT                 # attributed to the caller's line


def test_a_file_with_a_matching_digest_that_does_not_parse_is_named(run):
    """A writer that recorded the digest of garbage: the checksums pass, parsing names the file."""
    import hashlib

    from tessera.train.checkpoint import _state_digest
    bad = b"not safetensors"
    (run / "ckpt" / "extra.safetensors").write_bytes(bad)
    p = run / "ckpt" / "state.json"
    state = json.loads(p.read_text())
    state["files"]["extra.safetensors"] = {"sha256": hashlib.sha256(bad).hexdigest(), "bytes": len(bad)}
    state.pop("state_sha256")
    state["state_sha256"] = _state_digest(state)
    p.write_text(json.dumps(state))
    with pytest.warns(TesseraWarning, match="is unusable"):
        ck = load_checkpoint(run)
    assert ck.step == 5 and ck.fallback[1].startswith(f"{run / 'ckpt' / 'extra.safetensors'}: not a valid "
                                                      "safetensors file")


def test_stale_temporaries_are_removed_when_a_run_takes_the_directory(run):
    stale = [run / ".ckpt.tmp-k1ll3d", run / ".ckpt.prev.tmp-x2", run / ".ckpt.ab12cd34"]
    for d in stale:
        (d / "sub").mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x" * 100)
    (run / ".metrics.jsonl.ab12cd34.tmp").write_text("half")
    keep = [run / "notes.txt", run / ".ckpt.old"]
    keep[0].write_text("mine")
    keep[1].mkdir()
    _trainer(run)
    assert not any(d.exists() for d in stale) and not (run / ".metrics.jsonl.ab12cd34.tmp").exists()
    assert all(p.exists() for p in keep)


def test_a_symlinked_checkpoint_folder_is_refused_at_start(run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (run / "ckpt").rename(elsewhere)
    (run / "ckpt").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(CheckpointError, match="symbolic link"):
        _trainer(run)


def test_a_failed_save_keeps_both_checkpoints(run, monkeypatch):
    import tessera.train.checkpoint as ckmod
    tr = _trainer(run, checkpoint_every=5)
    tr.load_checkpoint()

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckmod, "atomic_write_bytes", full)
    with pytest.raises(OSError):
        tr.fit(15)
    assert load_checkpoint(run).step == 10 and verify_checkpoint(run / "ckpt.prev")[0]["step"] == 5
    assert not list(run.glob(".ckpt*tmp-*"))
