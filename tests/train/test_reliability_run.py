"""A run directory is owned by one run; SIGTERM / SIGINT, SIGKILL mid-checkpoint and a full disk all end
with the truth printed and a resume that equals an uninterrupted run (real subprocesses, real signals)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_digits import use_digits, write_config
from tessera.cli import main
from tessera.train.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _env(**hooks: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), env.get("PYTHONPATH", "")])
    return {**env, **hooks}


def _tessera(*args: str, **hooks: str) -> subprocess.CompletedProcess:
    """``tessera ARGS`` on digits in a fresh process, with fault-injection hooks (see cli_digits.py)."""
    return subprocess.run([sys.executable, str(HERE / "cli_digits.py"), *args], cwd=ROOT, env=_env(**hooks),
                          capture_output=True, text=True, timeout=120)


def _final(run: Path) -> dict:
    return json.loads((run / "final.json").read_text())


def _train_lines(run: Path) -> list:
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["lr"]) for r in lines if r["kind"] == "train"]


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    use_digits(monkeypatch)
    return write_config(tmp_path)


@pytest.fixture
def straight(tmp_path, cfg):
    """The uninterrupted 12-step run every interrupted one must equal."""
    out = tmp_path / "straight"
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    return out


def _same_run(a: Path, b: Path) -> None:
    assert _final(a)["tasks"] == _final(b)["tasks"] and _final(b)["step"] == 12
    assert (a / "ckpt" / "model.safetensors").read_bytes() == (b / "ckpt" / "model.safetensors").read_bytes()
    assert _train_lines(a) == _train_lines(b)


def test_sigterm_checkpoints_at_the_step_and_the_printed_command_continues_exactly(tmp_path, cfg, straight, capsys):
    out = tmp_path / "run"
    r = _tessera("train", str(cfg), "--out", str(out), TT_SIGNAL_AT="7:SIGTERM")
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tessera: stopped by SIGTERM at step 7; checkpoint saved in {out / 'ckpt'}; continue with: ")
    assert load_checkpoint(out).step == 7 and not (out / "final.json").exists()
    command = shlex.split(last.split("continue with: ", 1)[1])
    assert command[:2] == ["tessera", "train"] and "--resume" in command
    assert main(command[1:]) == 0
    _same_run(straight, out)


def test_second_sigint_quits_at_once_and_says_what_is_really_saved(tmp_path, cfg, monkeypatch, capsys):
    from tessera.train.trainer import Trainer
    real = Trainer.train_step

    def step_then_two_ctrl_c(self, step):          # Ctrl-C pressed twice right after step 5 (real signals)
        out = real(self, step)
        if self.step == 5:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "train_step", step_then_two_ctrl_c)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    out = tmp_path / "run"
    cfg.write_text(cfg.read_text().replace("checkpoint_every: 0", "checkpoint_every: 3"))
    assert main(["train", str(cfg), "--out", str(out)]) == 128 + signal.SIGINT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("tessera: SIGINT received; stopping at the end of this step")
    assert err[-1].startswith(f"tessera: interrupted at step 5; the last good checkpoint (step 3) is in {out / 'ckpt'}")
    assert load_checkpoint(out).step == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before   # handlers restored


def test_kill_9_during_a_checkpoint_write_leaves_the_last_one_and_a_stale_temp_that_resume_removes(
        tmp_path, cfg, straight):
    out = tmp_path / "run"
    cfg.write_text(cfg.read_text().replace("checkpoint_every: 0", "checkpoint_every: 4"))
    r = _tessera("train", str(cfg), "--out", str(out), TT_KILL_IN_SAVE="7")   # 5 files per checkpoint: in the 2nd
    assert r.returncode == -signal.SIGKILL
    assert [p.name for p in out.glob(".ckpt.tmp-*")], "the killed write left its temporary folder"
    assert load_checkpoint(out).step == 4
    assert main(["train", str(cfg), "--out", str(out), "--resume"]) == 0      # the lock did not stay stuck
    assert not list(out.glob(".ckpt.tmp-*"))
    _same_run(straight, out)              # the checkpoint cadence changes nothing computed


def test_disk_full_is_one_line_naming_the_step_and_the_intact_checkpoint(tmp_path, cfg, straight, capsys):
    out = tmp_path / "run"
    cfg.write_text(cfg.read_text().replace("checkpoint_every: 0", "checkpoint_every: 5"))
    r = _tessera("train", str(cfg), "--out", str(out), TT_FSIZE_AT="6:3000")
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip()
    assert "\n" not in err and err.startswith("tessera: error: training failed at step 10 (OSError: ")
    assert "File too large" in err and f"the last good checkpoint (step 5) is in {out / 'ckpt'}" in err
    assert "free disk space" in err and "--resume" in err
    assert load_checkpoint(out).step == 5                  # verified: the failed write touched nothing
    assert not list(out.glob(".ckpt.tmp-*"))
    assert main(["train", str(cfg), "--out", str(out), "--resume"]) == 0
    _same_run(straight, out)


def test_one_run_per_directory_and_a_killed_owner_frees_it(tmp_path, cfg, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from tessera.train.lock import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)", str(out)],
                              env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", str(cfg), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and f"run directory {out} is in use by pid {holder.pid}" in err
        assert not (out / "ckpt").exists() and not (out / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(cfg), "--out", str(out)]) == 0


def test_steps_past_the_schedule_is_refused_and_steps_behind_the_checkpoint_too(tmp_path, cfg, capsys):
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out), "--steps", "50"]) == 2
    err = capsys.readouterr().err
    assert "--steps 50 is past the end of the LR schedule (12 steps" in err and "--set train.steps=50" in err
    assert not (out / "ckpt").exists()
    assert main(["train", str(cfg), "--out", str(out), "--steps", "6"]) == 0
    assert main(["train", str(cfg), "--out", str(out), "--steps", "4", "--resume"]) == 2
    assert "behind the checkpoint, which is at step 6" in capsys.readouterr().err
    # the explicit way to train longer: a longer schedule (allowed on resume: a run-length key)
    assert main(["train", str(cfg), "--out", str(out), "--steps", "20", "--resume", "--set", "train.steps=20"]) == 0
    assert _final(out)["step"] == 20


def test_only_rank_0_owns_the_directory(tmp_path, monkeypatch):
    from tessera.train import Trainer, dist
    from train_helpers import tiny_setup
    model, tasks, cfg = tiny_setup()
    monkeypatch.setattr(dist, "rank", lambda: 1)          # what every other rank sees under torchrun
    tr = Trainer(model, tasks, cfg, out_dir=tmp_path / "r")
    assert not tr.is_main and not (tmp_path / "r" / ".lock").exists()
