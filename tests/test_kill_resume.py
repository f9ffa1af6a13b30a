"""kill -9 in the middle of `tessera reproduce`, rerun the same command: it continues from the
engine's checkpoint and ends with the same rows as an uninterrupted run (issue 10, item 3).

The experiment runs in a subprocess on scikit-learn's digits (the dataset reader is replaced), with a
checkpoint every 5 steps; the test SIGKILLs it as soon as a mid-run checkpoint exists.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = '''
import sys, torch
from sklearn.datasets import load_digits
import tessera.data
from tessera.experiments import RunOptions
from tessera.experiments import mixture_multitask as mm
d = load_digits()
x = torch.tensor(d.images[:400], dtype=torch.float32).unsqueeze(1) / 16.0
y = torch.tensor(d.target[:400], dtype=torch.long)
tessera.data.load_images = lambda name, split, root=None: (x, y)
mm.BUDGETS["quick"] = dict(depth=2, batch=16, n_train=120, n_eval=60, recalibrate=0, steps=60, n_val=20, ckpt=5,
                           score_train=30)
out = sys.argv[1]
mm.run(RunOptions(json=out + "/r.json", out=out + "/runs", seeds=1, budget="quick"), rows=mm.ROWS[::2], alpha=0.01)
'''


def _run(out: Path, kill_when=None) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    p = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    if kill_when is not None:
        t0 = time.time()
        while p.poll() is None and not kill_when() and time.time() - t0 < 120:
            time.sleep(0.05)
        assert p.poll() is None, f"finished before it could be killed: {p.stderr.read()}"
        p.send_signal(signal.SIGKILL)
    p.wait(timeout=300)
    return p


def _rows(out: Path) -> list:
    return [(r["setting"], r["method"], r["values"]) for r in json.loads((out / "r.json").read_text())["rows"]]


def test_sigkill_mid_unit_then_rerun_gives_the_same_json(tmp_path):
    a = tmp_path / "a"
    assert _run(a).returncode == 0
    b = tmp_path / "b"
    ckpts = lambda: [p for p in (b / "runs").rglob("ckpt/state.json")
                     if json.loads(p.read_text()).get("step", 0) >= 10]      # noqa: E731
    killed = _run(b, kill_when=lambda: bool(ckpts()))
    assert killed.returncode == -signal.SIGKILL
    step_at_kill = max(json.loads(p.read_text())["step"] for p in ckpts())
    assert 10 <= step_at_kill < 60 and not (b / "r.json").exists()
    again = _run(b)
    assert again.returncode == 0, again.stderr.read()
    assert _rows(b) == _rows(a)
