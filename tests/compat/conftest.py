import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convnets: one intra-op thread is faster than two on a shared CPU (no OpenMP waiting)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
