"""The command line: version, listing, one-line errors with exit status 2, data check, the registries."""
import inspect
import json
import subprocess
import sys

import pytest

from tessera import __version__
from tessera.bench import BENCHMARKS
from tessera.cli import main
from tessera.experiments import EXPERIMENTS, RunOptions


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_list_names_every_registered_entry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS.names() + BENCHMARKS.names():
        assert name in out


def test_every_registered_entry_accepts_the_call_the_cli_makes_and_has_a_help_line(capsys):
    """The CLI calls ``fn(RunOptions(...))`` and `tessera list` prints each entry's help line."""
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    for reg in (EXPERIMENTS, BENCHMARKS):
        for name in reg.names():
            inspect.signature(reg.get(name)).bind(RunOptions())          # TypeError: the CLI's call would fail
            assert reg.help(name) and any(name in line and reg.help(name)[:30] in line for line in out), name


@pytest.mark.parametrize("kind, registry", [("reproduce", EXPERIMENTS), ("bench", BENCHMARKS)])
def test_reproduce_and_bench_pass_the_flags_as_run_options(tmp_path, monkeypatch, capsys, kind, registry):
    seen = []
    name = registry.names()[0]

    def record(opts):
        seen.append(opts)
        return {"rows": [{"setting": "s", "method": "m", "mean": 0.5}], "wall_seconds": 1.0}
    monkeypatch.setitem(registry._items, name, record)
    argv = [kind, name, "--out", str(tmp_path / "o"), "--json", str(tmp_path / "r.json"), "--device", "cpu"]
    if kind == "reproduce":
        argv += ["--seeds", "2", "--budget", "quick", "--fresh"]
    assert main(argv) == 0
    (opts,) = seen
    assert (opts.out, opts.json, opts.device) == (tmp_path / "o", tmp_path / "r.json", "cpu")
    if kind == "reproduce":
        assert (opts.seeds, opts.budget, opts.resume) == (2, "quick", False)
    out = capsys.readouterr().out
    assert "setting" in out and "0.5" in out and f"{name}: 1.0 s" in out     # the rows, printed as a table


def test_unknown_experiment_is_one_line_error(capsys):
    assert main(["reproduce", "no-such-thing"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tessera: error: unknown experiment 'no-such-thing'") and "\n" not in err


def test_train_config_errors_name_the_key(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: isometric_small\ntrain:\n  stpes: 3\n")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "stpes" in err and err.count("\n") == 1
    assert main(["train", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r2")]) == 2
    assert "not found" in capsys.readouterr().err


def test_data_check_on_an_empty_root_writes_json(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["data", "check", "--root", str(tmp_path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["datasets"]["mnist"]["present"] is False
    assert "mnist" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "tessera", "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and __version__ in r.stdout
