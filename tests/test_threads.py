"""``intra_op_threads`` limits torch's intra-op threads inside a block and always restores them."""
import pytest
import torch

from tessera.threads import intra_op_threads


@pytest.fixture(autouse=True)
def two_threads():
    """Start from 2 threads (the suite runs with 1), so limiting and restoring are both visible."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


def test_restores_after_block_and_on_error():
    before = torch.get_num_threads()
    assert before == 2
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_as_decorator_and_never_raises_the_count():
    before = torch.get_num_threads()

    @intra_op_threads(before + 4)
    def inside() -> int:
        return torch.get_num_threads()

    assert inside() == before and inside() == before   # reusable; at most the current count

    @intra_op_threads(1)
    def limited() -> int:
        return torch.get_num_threads()

    assert limited() == 1
    assert torch.get_num_threads() == before


def test_demo_sections_run_on_one_thread(tmp_path, monkeypatch):
    """tessera demo's tiny models ran ~18x slower on two threads of a loaded CPU: sections get one."""
    import sys
    import types

    import torch

    from tessera.demo import run_demo

    seen = []
    mod = types.ModuleType("tessera_fake.demo")
    mod.section = lambda out: seen.append(torch.get_num_threads()) or [{"threads": seen[-1]}]
    monkeypatch.setitem(sys.modules, "tessera_fake", types.ModuleType("tessera_fake"))
    monkeypatch.setitem(sys.modules, "tessera_fake.demo", mod)
    torch.set_num_threads(2)   # the suite's fixture restores its own count afterwards
    try:
        run_demo(tmp_path, sections=[("fake", "tessera_fake.demo:section")])
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
    assert seen == [1] and after == 2
