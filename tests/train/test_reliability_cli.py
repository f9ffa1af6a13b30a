"""Every failure of the command line is one line, ``tessera: error: <what>; <what to do>``, exit status 2;
arguments are checked before any work starts."""
from __future__ import annotations

import json

import pytest

from cli_digits import use_digits, write_config
from tessera.cli import main

BAD_TRAIN = [
    (["--set", "train.optim.momentum=-1"], "config key 'train.optim.momentum': must be in [0, 1)"),
    (["--set", "train.threads=100000"], "config key 'train.threads'"),
    (["--set", "train.device=tpu9"], "unknown device 'tpu9'"),
    (["--set", "tasks=[{name: d, dataset: digits, loss: mse}]"], "loss mse does not fit outputs"),
    (["--set", "tasks=[{name: d, dataset: digits, num_classes: 3}]"], "labels go up to 9 but the model has 3 outputs"),
    (["--set", "tasks=[{name: d, dataset: digits, metrics: [auc]}]"], "metric auc needs binary 0/1 labels"),
    (["--set", "model.kwargs.patch=3"], "not a multiple of patch=3"),
    (["--steps", "-3"], "argument --steps: must be >= 0, got -3"),
    (["--steps", "13"], "past the end of the LR schedule"),
    (["--resume"], "--resume: no checkpoint"),
    (["--set", "train.steps"], "expected key=value"),
]


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tessera: error: "), err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    use_digits(monkeypatch)
    return write_config(tmp_path)


@pytest.mark.parametrize("extra, says", BAD_TRAIN)
def test_bad_train_input_is_one_line(tmp_path, cfg, capsys, extra, says):
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), *extra]) == 2
    _one_line(capsys, says)
    assert not (tmp_path / "run" / "ckpt").exists()


def test_bad_paths_are_one_line(tmp_path, cfg, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["train", str(cfg), "--out", str(tmp_path / "afile")]) == 2
    _one_line(capsys, "is a file, not a folder")
    assert main(["train", str(cfg), "--out", "/proc/no/such/run"]) == 2
    _one_line(capsys, "/proc/no/such/run")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(cfg.read_bytes() + b"# \xff\n")
    assert main(["train", str(latin), "--out", str(tmp_path / "r")]) == 2
    _one_line(capsys, "not UTF-8")
    dup = tmp_path / "dup.yaml"
    dup.write_text(cfg.read_text() + "train: {steps: 3}\n")
    assert main(["train", str(dup), "--out", str(tmp_path / "r")]) == 2
    _one_line(capsys, "key 'train' appears twice")
    assert main(["train"]) == 2
    _one_line(capsys, "the following arguments are required: config, --out", "--help")


def test_a_crash_inside_training_names_the_step_and_the_last_good_checkpoint(tmp_path, cfg, capsys, monkeypatch):
    from tessera.train.trainer import Trainer
    real = Trainer.train_step

    def boom(self, step):
        if step == 7:
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        return real(self, step)

    monkeypatch.setattr(Trainer, "train_step", boom)
    cfg.write_text(cfg.read_text().replace("checkpoint_every: 0", "checkpoint_every: 5"))
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    _one_line(capsys, "training failed at step 7 (RuntimeError: CUDA error: an illegal memory access",
              f"the last good checkpoint (step 5) is in {out / 'ckpt'}", "continue with: tessera train", "--resume")


def test_eval_arguments_and_a_damaged_checkpoint(tmp_path, cfg, capsys):
    out = tmp_path / "run"
    cfg.write_text(cfg.read_text().replace("checkpoint_every: 0", "checkpoint_every: 6"))
    assert main(["train", str(cfg), "--out", str(out)]) == 0
    capsys.readouterr()
    (tmp_path / "adir").mkdir()
    assert main(["eval", str(out), "--json", str(tmp_path / "adir")]) == 2
    _one_line(capsys, "--json", "is a folder")
    assert main(["eval", str(out), "--device", "tpu9"]) == 2
    _one_line(capsys, "unknown device 'tpu9'")
    assert main(["eval", str(tmp_path / "adir")]) == 2
    _one_line(capsys, "no checkpoint in")
    p = out / "ckpt" / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-8] + b"\x00" * 8)            # same size, corrupt
    assert main(["eval", str(out), "--json", str(tmp_path / "e.json")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"tessera: warning: {out / 'ckpt'} is unusable")
    assert "sha256 mismatch" in err[0] and "(step 6)" in err[0]
    assert json.loads((tmp_path / "e.json").read_text())["step"] == 6


@pytest.mark.parametrize("argv, says", [
    (["reproduce", "muir-synthetic", "--seeds", "0"], "argument --seeds: must be >= 1, got 0"),
    (["bench", "mixture-overhead", "--seeds", "-1"], "argument --seeds: must be >= 1, got -1"),
    (["bench", "mixture-overhead", "--device", "tpu9"], "unknown device 'tpu9'"),
    (["reproduce", "muir-synthetic", "--data-root", "/no/such/root"], "data root /no/such/root is not a folder"),
    (["reproduce", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["data", "check", "--root", "/no/such/root"], "/no/such/root"),
])
def test_registered_runs_and_data_check_check_arguments_before_any_work(argv, says, capsys, monkeypatch):
    from tessera.bench import BENCHMARKS
    from tessera.experiments import EXPERIMENTS
    for reg in (EXPERIMENTS, BENCHMARKS):
        monkeypatch.setattr(reg, "get", lambda name, reg=reg, real=reg.get: real(name) and _never)
    assert main(argv) == 2
    _one_line(capsys, says)


def _never(opts):
    raise AssertionError("the run started despite a bad argument")


def test_json_destination_checked_before_the_run(tmp_path, capsys, monkeypatch):
    from tessera.experiments import EXPERIMENTS
    monkeypatch.setattr(EXPERIMENTS, "get", lambda name: _never)
    (tmp_path / "adir").mkdir()
    assert main(["reproduce", "muir-synthetic", "--json", str(tmp_path / "adir")]) == 2
    _one_line(capsys, "--json", "is a folder")
    assert main(["data", "check", "--root", str(tmp_path), "--json", str(tmp_path / "adir")]) == 2
    _one_line(capsys, "is a folder")


def test_ctrl_c_and_unexpected_errors_outside_training(tmp_path, capsys, monkeypatch):
    from tessera.experiments import EXPERIMENTS
    out = tmp_path / "out"

    def interrupted_after_one_seed(opts):
        (opts.out / "x").mkdir(parents=True)
        (opts.out / "x" / "seed0.json").write_text("{}")
        raise KeyboardInterrupt

    def interrupted_at_once(opts):
        raise KeyboardInterrupt

    def bug(opts):
        raise ValueError("a bug\nsecond line")

    def disk(opts):
        raise OSError(28, "No space left on device", str(opts.out / "r.json"))

    for fn, code, says in [(interrupted_after_one_seed, 130, f"1 finished result file(s) are saved under {out}"),
                           (interrupted_at_once, 130, "this command saved nothing"),
                           (bug, 2, "error: unexpected ValueError: a bug second line; rerun with TESSERA_TRACEBACK=1"),
                           (disk, 2, "error: No space left on device")]:
        monkeypatch.setattr(EXPERIMENTS, "get", lambda name, fn=fn: fn)
        assert main(["reproduce", "muir-synthetic", "--out", str(out), "--fresh"]) == code
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    monkeypatch.setenv("TESSERA_TRACEBACK", "1")
    monkeypatch.setattr(EXPERIMENTS, "get", lambda name: bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["reproduce", "muir-synthetic", "--out", str(out)])
