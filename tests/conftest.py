"""Suite-wide: tiny models on a shared CPU run fastest (and deterministically) on one intra-op thread."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_ignore_collect(collection_path, config):
    """``--doctest-modules`` would import every ``conftest.py`` as a module named ``conftest`` (they clash:
    "import file mismatch"); they hold no docstring examples, and pytest loads them as plugins anyway."""
    return True if collection_path.name == "conftest.py" else None
