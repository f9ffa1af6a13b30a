"""Suite-wide: tiny models on a shared CPU run fastest (and deterministically) on one intra-op thread."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
