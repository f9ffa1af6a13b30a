#!/usr/bin/env python3
"""Mutation testing of the core modules (issue 17) with mutmut 3; configuration in pyproject's [tool.mutmut].

    pip install mutmut                       # 3.x
    python tools/mutation.py                 # run every mutant, then print the score per module
    python tools/mutation.py run "tessera.results.*" "tessera.core.*"   # some modules only
    python tools/mutation.py report          # scores of what has run so far (mutants/ keeps the results)
    mutmut show NAME                         # the diff of one mutant

mutmut copies ``tessera/`` into ``mutants/``, records which of the selected tests call each mutated function
and runs only those for each mutant. Score = killed / (mutants - equivalent); "no tests" (a function no
selected test calls) counts as surviving. Equivalent mutants (no test can tell them apart from the original)
are listed in CONTRIBUTING.md, one ``- `NAME`: reason`` line each, and excluded from the score.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLED = {"killed", "timeout", "segfault"}             # a mutant the tests noticed (crash or time-out included)


def equivalent() -> dict[str, str]:
    """NAME -> reason, from CONTRIBUTING.md's list of equivalent mutants."""
    text = (ROOT / "CONTRIBUTING.md").read_text() if (ROOT / "CONTRIBUTING.md").is_file() else ""
    return dict(re.findall(r"^- `(tessera\.[^`]+__mutmut_\d+)`: (.+)$", text, flags=re.M))


def _mutmut() -> str:
    """The ``mutmut`` of this interpreter's environment (it need not be on PATH), else the one on PATH."""
    here = Path(sys.executable).parent / "mutmut"
    return str(here) if here.is_file() else "mutmut"


def statuses() -> dict[str, str]:
    r = subprocess.run([_mutmut(), "results", "--all", "true"], cwd=ROOT, capture_output=True, text=True)
    return dict(m.groups() for m in re.finditer(r"^\s*(\S+__mutmut_\d+): (.+)$", r.stdout, flags=re.M))


def module(name: str) -> str:
    return re.split(r"\.x[_ǁ]", name, maxsplit=1)[0]


def report() -> int:
    st, eq = statuses(), equivalent()
    per: dict[str, Counter] = defaultdict(Counter)
    for name, s in st.items():
        per[module(name)]["equivalent" if name in eq and s not in KILLED else s] += 1
    print(f"{'module':34s} {'mutants':>7s} {'killed':>6s} {'equiv':>5s} {'surv':>5s} {'no test':>7s} "
          f"{'unrun':>5s}  score")
    tot: Counter = Counter()
    for mod in sorted(per):
        c = per[mod]
        tot.update(c)
        print(_row(mod, c))
    print(_row("all", tot))
    unknown = sorted(set(eq) - set(st))
    if unknown:
        print(f"\n{len(unknown)} equivalent mutant(s) listed in CONTRIBUTING.md do not exist (any more): {unknown[:5]}")
    return 0


def _row(mod: str, c: Counter) -> str:
    n = sum(c.values())
    killed = sum(c[k] for k in KILLED)
    run = n - c["not checked"] - c["equivalent"]
    score = f"{100 * killed / run:5.1f}%" if run else "   - "
    return (f"{mod:34s} {n:7d} {killed:6d} {c['equivalent']:5d} {c['survived']:5d} {c['no tests']:7d} "
            f"{c['not checked']:5d}  {score}")


def run(patterns: list[str]) -> int:
    children = os.environ.get("MUTMUT_CHILDREN", "2")
    r = subprocess.run([_mutmut(), "run", "--max-children", children, *patterns], cwd=ROOT,
                       env={**os.environ, "MPLBACKEND": "Agg"})
    report()
    return r.returncode


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["report"]:
        sys.exit(report())
    sys.exit(run(args[1:] if args[:1] == ["run"] else args))
