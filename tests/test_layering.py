"""The library never imports the experiments or the benchmarks (issue 10, item 4).

Checked two ways: statically (every import statement of every library module, absolute or relative,
including imports inside functions) and at run time (importing the whole library in a fresh
interpreter loads no ``tessera.experiments`` / ``tessera.bench`` module).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tessera

ROOT = Path(tessera.__file__).parent
LIBRARY = ("core", "nn", "mixture", "hyper", "compat", "adapt", "data", "train")
TOP_LEVEL = ("errors.py", "io.py", "config.py", "registry.py", "results.py", "threads.py")
APPS = ("experiments", "bench")


def _library_files() -> list[Path]:
    files = [p for pkg in LIBRARY for p in (ROOT / pkg).rglob("*.py")]
    return files + [ROOT / f for f in TOP_LEVEL if (ROOT / f).is_file()]


def _imported(path: Path) -> list[str]:
    """Absolute dotted names of every module ``path`` imports (relative imports resolved)."""
    pkg = ".".join(("tessera",) + path.relative_to(ROOT).parent.parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out += [base] + [f"{base}.{a.name}" for a in node.names]
    return out


def test_resolver_sees_relative_and_function_level_imports(tmp_path):
    assert _imported(ROOT / "mixture" / "training.py").count("tessera.train") >= 1
    names = _imported(ROOT / "hyper" / "training.py")
    assert "tessera.train.method" in names and "tessera.hyper.config" in names


def test_no_library_module_imports_experiments_or_bench():
    bad = []
    for f in _library_files():
        for name in _imported(f):
            if any(name == f"tessera.{a}" or name.startswith(f"tessera.{a}.") for a in APPS):
                bad.append(f"{f.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_importing_the_library_loads_no_app_module():
    mods = ", ".join(f"tessera.{p}" for p in LIBRARY)
    code = (f"import importlib, sys\nfor m in '{mods}'.split(', '): importlib.import_module(m)\n"
            "print(sorted(k for k in sys.modules if k.startswith(('tessera.experiments', 'tessera.bench'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout
