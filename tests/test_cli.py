"""The command line: version, listing, one-line errors with exit status 2, data check, the registries."""
import json
import subprocess
import sys

import pytest

from tessera import __version__
from tessera.bench import BENCHMARKS
from tessera.cli import main
from tessera.experiments import EXPERIMENTS


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_list_names_every_registered_entry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS.names() + BENCHMARKS.names():
        assert name in out


@pytest.mark.parametrize("name", EXPERIMENTS.names() + BENCHMARKS.names())
def test_every_registered_entry_resolves_to_a_callable(name):
    reg = EXPERIMENTS if name in EXPERIMENTS else BENCHMARKS
    assert callable(reg.get(name))


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
