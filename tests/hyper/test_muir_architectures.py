"""muir-architectures: a CNN, an LSTM LM and a transformer LM share one bank (tiny synthetic stand-ins)."""
import json

import torch

import tessera.experiments.muir_crossmodal as mc
from tessera.experiments import RunOptions
from tessera.experiments.muir_architectures import run
from tessera.experiments.muir_tasks import TransformerTask, synthetic_tasks
from tessera.hyper import reparameterize

TINY = dict(images=128, vocab=40, tokens=1200, sequences=64, length=40, hidden=16, channels=16)
BUDGET = mc.Budget(steps=6, n_init=2, n_iter=2, eval_tokens=None, eval_images=None)


def _tasks():
    vis, lang, _ = synthetic_tasks(0, **TINY)
    return [vis, lang, TransformerTask(lang.train_tokens, lang.test_tokens, lang.vocab, dataset="random tokens",
                                       hidden=16, heads=2, memory=8)]


def test_the_transformer_shares_its_attention_and_ffn_weights():
    vis, lang, tr = _tasks()
    torch.manual_seed(0)
    muir = reparameterize([t.model() for t in (vis, lang, tr)], block=(16, 16), context=4, lam=1, verbose=False)
    t_targets = muir.targets[2]
    assert any("self_attn" in n for n in t_targets) and any("linear1" in n for n in t_targets), t_targets
    assert not any(n.startswith(("encoder", "decoder")) for n in t_targets)  # tied ends stay unshared adapters
    tokens = lang.test_tokens[:24].view(-1, 2)                                # (T, B)
    logits, state = muir[2](tokens)
    assert logits.shape == (tokens.numel(), lang.vocab) and state.shape == (8, 2)


def test_runs_end_to_end_and_resumes(tmp_path, capsys):
    opts = RunOptions(out=tmp_path / "out", json=tmp_path / "r.json", seeds=1)
    res = run(opts, tasks=_tasks(), budget=BUDGET)
    rows = {(r["setting"][0], r["method"]): r for r in res["rows"] if r["metric"] != "hypermodules_shared_across_architectures"}
    assert set(rows) == {(s, m) for s in "LST" for m in ("baseline", "muir-across")}
    assert all(r["n"] == 1 and r["mean"] == r["mean"] for r in rows.values())           # finite, measured
    share = [r for r in res["rows"] if r["metric"] == "hypermodules_shared_across_architectures"]
    assert len(share) == 1 and set(share[0]["subsets"]) <= {"L", "S", "T", "L+S", "L+T", "S+T", "L+S+T"}
    assert share[0]["mean"] == sum(v for k, v in share[0]["subsets"].items() if "+" in k)
    assert json.loads((tmp_path / "r.json").read_text())["name"] == "muir-architectures"
    capsys.readouterr()
    again = run(opts, tasks=_tasks(), budget=BUDGET)                                       # every unit reused
    assert "training" not in capsys.readouterr().out
    assert [r["mean"] for r in again["rows"]] == [r["mean"] for r in res["rows"]]
