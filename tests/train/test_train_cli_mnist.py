"""train_main / eval_main on a slice of real MNIST (skipped when the data root lacks it)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessera.errors import CheckpointError, ConfigError, DataError
from tessera.train import eval_main, train_main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "mnist-isometric.yaml"


def _data_root() -> Path | None:
    from tessera.data import resolve_root
    for cand in (resolve_root(None), ROOT.parent / "shared" / "data"):
        if (cand / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return cand
    return None


DATA = _data_root()
pytestmark = [pytest.mark.shared_data, pytest.mark.skipif(DATA is None, reason="MNIST not in the data root")]


def _sets(*extra: str) -> list[str]:
    return [f"data_root={DATA}", "model.kwargs.depth=2", "train.batch_size=32", "train.log_every=5",
            "tasks=[{name: mnist, dataset: mnist, limit_train: 640, limit_eval: 200}]", *extra]


def test_cli_resume_equals_straight_run_and_eval(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    fa = train_main(CONFIG, a, steps=12, overrides=_sets())
    fb1 = train_main(CONFIG, b, steps=6, overrides=_sets())
    assert fb1["step"] == 6
    with pytest.raises(CheckpointError, match="--resume"):
        train_main(CONFIG, b, steps=12, overrides=_sets())
    with pytest.raises(CheckpointError, match=r"train\.optim\.lr"):
        train_main(CONFIG, b, steps=12, resume=True, overrides=_sets("train.optim.lr=0.5"))
    fb = train_main(CONFIG, b, steps=12, resume=True, overrides=_sets())
    ja, jb = (json.loads((d / "final.json").read_text()) for d in (a, b))
    assert ja["step"] == jb["step"] == 12
    assert ja["tasks"] == jb["tasks"] == fa["tasks"] == fb["tasks"]
    assert (a / "metrics.jsonl").is_file() and (a / "config.json").is_file()
    ev = eval_main(b, json_path=tmp_path / "eval.json")
    assert ev["step"] == 12 and ev["tasks"]["mnist"]["accuracy"] == pytest.approx(jb["tasks"]["mnist"]["accuracy"])
    assert json.loads((tmp_path / "eval.json").read_text())["tasks"] == ev["tasks"]


def test_cli_input_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train_main(CONFIG, tmp_path / "new", steps=2, resume=True, overrides=_sets())
    with pytest.raises(ConfigError, match=r"model\.kwargs|depht"):
        train_main(CONFIG, tmp_path / "x", steps=1, overrides=_sets("model.kwargs.depht=3"))
    with pytest.raises(DataError):
        train_main(CONFIG, tmp_path / "y", steps=1, overrides=[f"data_root={tmp_path / 'empty'}"])
    assert not (tmp_path / "y" / "ckpt").exists()
