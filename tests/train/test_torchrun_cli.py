"""README: ``tessera train`` "works under torchrun". Through the real command line: ``torchrun
--nproc_per_node 2 -m tessera train`` on a slice of MNIST ends close to one process (gradients averaged over
the two half batches; BatchNorm normalizes by each rank's half batch, so the parameters agree closely, not
bitwise, and the running statistics are rank 0's), only rank 0 writes the logs and final.json (world_size 2),
and its checkpoint is an ordinary one that a single-process ``--resume`` continues."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tessera.io import load_tensors

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "mnist-isometric.yaml"


def _data_root() -> Path | None:
    from tessera.data import resolve_root
    for cand in (resolve_root(None), ROOT.parent / "shared" / "data", Path("/work/shared/data")):
        if (cand / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return cand
    return None


DATA = _data_root()
TORCHRUN = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
pytestmark = [pytest.mark.slow, pytest.mark.shared_data,
              pytest.mark.skipif(DATA is None, reason="MNIST not in the data root"),
              pytest.mark.skipif(TORCHRUN is None, reason="torchrun not installed")]

SETS = [f"data_root={DATA}", "model.kwargs.depth=1", "model.kwargs.dropout=0.0", "train.batch_size=32",
        "train.log_every=2", "train.checkpoint_every=3", "train.ema.enabled=false", "train.threads=1",
        "tasks=[{name: mnist, dataset: mnist, metrics: [accuracy], limit_train: 320, limit_eval: 100}]"]


def _run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    return r


def test_torchrun_two_processes_through_the_cli_equal_one_process(tmp_path):
    ddp, one = tmp_path / "ddp", tmp_path / "one"
    _run([TORCHRUN, "--standalone", "--nnodes", "1", "--nproc_per_node", "2", "-m", "tessera", "train", str(CONFIG),
          "--out", str(ddp), "--steps", "6", "--set", *SETS])
    _run([sys.executable, "-m", "tessera", "train", str(CONFIG), "--out", str(one), "--steps", "6", "--set", *SETS])
    fd, fo = (json.loads((d / "final.json").read_text()) for d in (ddp, one))
    assert fd["world_size"] == 2 and fo["world_size"] == 1 and fd["step"] == fo["step"] == 6
    assert fd["tasks"]["mnist"]["accuracy"] == pytest.approx(fo["tasks"]["mnist"]["accuracy"], abs=0.011)
    assert (ddp / "ckpt" / "state.json").is_file() and not list(ddp.glob(".ckpt.tmp-*"))
    lines = [(d / "metrics.jsonl").read_text().splitlines() for d in (ddp, one)]
    assert len(lines[0]) == len(lines[1]) > 0                          # rank 0 alone logs
    wd, wo = (load_tensors(d / "ckpt" / "model.safetensors") for d in (ddp, one))
    assert sorted(wd) == sorted(wo)
    for k in wd:                                                       # the same parameters after 6 steps
        if "running_" not in k and "num_batches" not in k:
            torch.testing.assert_close(wd[k], wo[k], rtol=1e-3, atol=1e-4, msg=k)
    # the two-process checkpoint is an ordinary one: one process resumes it to step 8
    _run([sys.executable, "-m", "tessera", "train", str(CONFIG), "--out", str(ddp), "--steps", "8", "--resume",
          "--set", *SETS])
    assert json.loads((ddp / "final.json").read_text())["step"] == 8
