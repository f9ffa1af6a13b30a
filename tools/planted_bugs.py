#!/usr/bin/env python3
"""Plant each bug users fear (issue 17) in the source, one at a time, run the tests meant to catch it,
and restore the file. Every bug must make its tests FAIL; the script exits 1 if one survives.

    python tools/planted_bugs.py            # all bugs (about 2 minutes)
    python tools/planted_bugs.py adda-labels mean-stderr   # some of them

The source is restored in a ``finally`` (also on Ctrl-C); ``git diff --stat tessera`` stays empty.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (file, text in the source, the bug, tests that must fail)
BUGS: dict[str, tuple[str, str, str, list[str]]] = {
    "scores-optimizer-state-kept": (
        "tessera/hyper/hypermodules.py",
        "            optimizer.state.pop(self.scores, None)",
        "            pass",
        ["tests/hyper/test_search_generations.py"]),
    "group-scores-optimizer-state-kept": (
        "tessera/hyper/grouped.py",
        "                optimizer.state.pop(st, None)",
        "                pass",
        ["tests/hyper/test_search_generations.py"]),
    "scores-optimizer-not-passed": (
        "tessera/hyper/training.py",
        "            self.muir.begin_generation(self._opt(trainer))",
        "            self.muir.begin_generation()",
        ["tests/hyper/test_search_generations.py"]),
    "compat-class-names-skipped": (
        "tessera/compat/measure.py",
        "            out[i, j] = evaluate(e, h, t.x, t.y, bn=bn, data_classes=t.classes, head_classes=hc[j],",
        "            out[i, j] = evaluate(e, h, t.x, t.y, bn=bn,",
        ["tests/compat/test_measure.py"]),
    "compat-recombination-with-diagonal": (
        "tessera/compat/measure.py",
        "    return float(m[~np.eye(len(m), dtype=bool)].mean())",
        "    return float(m.mean())",
        ["tests/compat/test_measure.py"]),
    "adda-labels-not-inverted": (
        "tessera/adapt/adversarial.py",
        "    return F.binary_cross_entropy_with_logits(target_logits, torch.ones_like(target_logits))",
        "    return F.binary_cross_entropy_with_logits(target_logits, torch.zeros_like(target_logits))",
        ["tests/adapt/test_adapt_losses.py", "tests/adapt/test_adapt_methods.py"]),
    "mean-stderr-is-std": (
        "tessera/results.py",
        "    return m, math.sqrt(var / len(vals))",
        "    return m, math.sqrt(var)",
        ["tests/test_results.py"]),
    "target-bn-updates-while-frozen": (
        "tessera/adapt/models.py",
        "        for m in self.target_modules(name) if target_train else ():",
        "        for m in self.target_modules(name):",
        ["tests/adapt/test_adapt_isolation.py"]),
}


def plant(name: str) -> tuple[bool, float]:
    """(caught, seconds): True when the tests fail with the bug in place."""
    rel, old, new, tests = BUGS[name]
    path = ROOT / rel
    src = path.read_text()
    if src.count(old) != 1:
        raise SystemExit(f"{name}: the text to replace occurs {src.count(old)} times in {rel}; update BUGS")
    t0 = time.perf_counter()
    try:
        path.write_text(src.replace(old, new))
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-x", "-q", *tests],
                           cwd=ROOT, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    finally:
        path.write_text(src)
    return r.returncode == 1, time.perf_counter() - t0


def main(names: list[str]) -> int:
    survivors = []
    for name in names or list(BUGS):
        caught, s = plant(name)
        print(f"{name:40s} {'caught' if caught else 'SURVIVED'}  ({s:.0f} s)", flush=True)
        if not caught:
            survivors.append(name)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
