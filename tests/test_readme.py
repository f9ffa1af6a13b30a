"""The README's Python examples run as written (a renamed function breaks this test, not a user)."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 2, "README lost its quick tour / technique example"


@pytest.mark.parametrize("i", range(len(_python_blocks())))
def test_readme_python_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files (plots, components)
    code = _python_blocks()[i]
    exec(compile(code, f"README.md python block {i}", "exec"), {"__name__": f"readme_{i}"})
