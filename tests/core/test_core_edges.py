"""Edges of the generation core checked against hand computations (issue 17: tests that catch bugs):
index validation and its cache, dtype handling, view plans with gaps, overlaps, aliases (tied weights),
RNN binding, release on error."""
import pytest
import torch
from torch import nn

from tessera.core import GeneratedModel, Slot, WeightGenerator, WeightWriter, bind, mix, take_parameter
from tessera.errors import ShapeError


def test_mix_index_dtype_range_and_int32():
    bank = torch.arange(12.0).reshape(4, 3)                        # row r = [3r, 3r+1, 3r+2]
    coeff = torch.tensor([[1.0, 2.0]])
    want = torch.tensor([[1 * 3 + 2 * 9, 1 * 4 + 2 * 10, 1 * 5 + 2 * 11]], dtype=torch.float32)  # rows 1 and 3
    assert torch.equal(mix(bank, coeff, torch.tensor([[1, 3]])), want)
    assert torch.equal(mix(bank, coeff, torch.tensor([[1, 3]], dtype=torch.int32)), want)
    with pytest.raises(ShapeError, match="index must be int64 .or int32. row ids, got float32"):
        mix(bank, coeff, torch.tensor([[1.0, 3.0]]))
    with pytest.raises(ShapeError, match=r"index holds row 4, the bank has rows 0..3"):
        mix(bank, coeff, torch.tensor([[1, 4]]))
    with pytest.raises(ShapeError, match=r"index holds row -1, the bank has rows 0..3"):
        mix(bank, coeff, torch.tensor([[-1, 2]]))


def test_mix_index_check_is_redone_after_an_in_place_change():
    bank = torch.randn(4, 2)
    idx = torch.tensor([[0, 1]])
    mix(bank, torch.ones(1, 2), idx)                                # checked and cached
    idx[0, 1] = 7                                                   # same tensor, new version
    with pytest.raises(ShapeError, match="row 7"):
        mix(bank, torch.ones(1, 2), idx)
    idx2 = torch.tensor([[0, 3]])
    mix(torch.randn(4, 2), torch.ones(1, 2), idx2)
    with pytest.raises(ShapeError, match="row 3, the bank has rows 0..2"):   # same index, smaller bank
        mix(torch.randn(3, 2), torch.ones(1, 2), idx2)


def test_mix_dtypes_and_argument_errors():
    bank = torch.randn(3, 2, dtype=torch.float64)
    out = mix(bank, torch.ones(1, 3))                                # float32 coefficients, float64 bank
    assert out.dtype == torch.float64 and torch.allclose(out[0], bank.sum(0))
    with pytest.raises(ShapeError, match="floating point"):
        mix(torch.ones(3, 2, dtype=torch.long), torch.ones(1, 3))
    with pytest.raises(ShapeError, match=r"bank must be \(R, P\) and coeff \(L, J\)"):
        mix(torch.randn(6), torch.ones(1, 6))
    with pytest.raises(ShapeError, match="must be tensors; got list"):
        mix([[1.0]], torch.ones(1, 1))                                # type: ignore[arg-type]
    empty = mix(bank, torch.ones(2, 0), torch.zeros(2, 0, dtype=torch.long))
    assert empty.shape == (2, 2) and not empty.any()


def _linear(n_in=2, n_out=2):
    m = nn.Linear(n_in, n_out)
    take_parameter(m, "weight")
    return m


def test_writer_views_with_gaps_unsorted_offsets_and_a_remainder():
    a, b = _linear(), _linear(3, 1)
    src = torch.arange(12.0)
    w = WeightWriter([Slot(a, "weight", torch.Size([2, 2]), offset=6),      # listed out of order
                      Slot(b, "weight", torch.Size([1, 3]), offset=1)])      # gap at 0, at 4-5, tail 10-11
    w.write(src)
    assert a.weight.tolist() == [[6.0, 7.0], [8.0, 9.0]] and b.weight.tolist() == [[1.0, 2.0, 3.0]]
    src2 = torch.arange(20.0)                                                # a longer source: a new plan
    w.write(src2)
    assert a.weight.tolist() == [[6.0, 7.0], [8.0, 9.0]]
    with pytest.raises(ShapeError, match="need 10 values but the generated source has 8"):
        w.write(torch.arange(8.0))


def test_writer_refuses_overlapping_views():
    a, b = _linear(), _linear()
    w = WeightWriter([Slot(a, "weight", torch.Size([2, 2]), offset=0), Slot(b, "weight", torch.Size([2, 2]), offset=3)])
    with pytest.raises(ShapeError, match="overlaps the previous slot at offset 3"):
        w.write(torch.arange(10.0))


def test_views_and_gathers_together_keep_slot_order_and_gradients():
    a, b, c = _linear(), _linear(), _linear()
    src = torch.arange(8.0, requires_grad=True)
    w = WeightWriter([Slot(a, "weight", torch.Size([2, 2]), index=torch.tensor([7, 7, 0, 1])),
                      Slot(b, "weight", torch.Size([2, 2]), offset=4),
                      Slot(c, "weight", torch.Size([2, 2]), index=torch.tensor([2, 3, 2, 3]))])
    vals = w.tensors(src)
    assert [v.flatten().tolist() for v in vals] == [[7, 7, 0, 1], [4, 5, 6, 7], [2, 3, 2, 3]]
    sum((v * (i + 1)).sum() for i, v in enumerate(vals)).backward()
    # d/dsrc: slot a (x1) uses 7 twice, 0, 1; slot b (x2) uses 4..7; slot c (x3) uses 2 and 3 twice
    assert src.grad.tolist() == [1, 1, 6, 6, 2, 2, 2, 4]


def test_aliases_share_one_tensor_and_are_released_together():
    a, b = _linear(), _linear()
    src = torch.arange(4.0, requires_grad=True)
    w = WeightWriter([Slot(a, "weight", torch.Size([2, 2]), offset=0, aliases=((b, "weight"),))])
    w.write(src * 2)
    assert a.weight is b.weight and a.weight.grad_fn is not None
    w.detach()
    assert a.weight is b.weight and a.weight.grad_fn is None and a.weight.tolist() == [[0, 2], [4, 6]]


def test_bind_keeps_an_lstm_flat_weight_list_in_sync():
    lstm = nn.LSTM(2, 3)
    old = take_parameter(lstm, "weight_hh_l0")
    new = torch.zeros_like(old)
    bind(lstm, "weight_hh_l0", new)
    i = lstm._flat_weights_names.index("weight_hh_l0")
    assert lstm._flat_weights[i] is new and lstm.weight_hh_l0 is new
    x = torch.randn(4, 1, 2)
    h, _ = lstm(x)
    assert h.shape == (4, 1, 3)


class _Gen(WeightGenerator):
    def __init__(self, m):
        super().__init__()
        take_parameter(m, "weight")
        self.bank = nn.Parameter(torch.arange(4.0))
        self.writer = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), offset=0)])

    def source(self):
        return self.bank * 3


def test_materialize_is_detached_and_release_happens_on_error():
    m = nn.Linear(2, 2)
    g = _Gen(m)
    (val,) = g.materialize()
    assert val.tolist() == [[0, 3], [6, 9]] and val.grad_fn is None and not val.requires_grad

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = m

        def forward(self, x):
            assert self.lin.weight.grad_fn is not None       # generated, in the graph, during the forward
            raise RuntimeError("boom")

    model = GeneratedModel(Boom(), g)
    with pytest.raises(RuntimeError, match="boom"):
        model(torch.randn(1, 2))
    assert m.weight.grad_fn is None                          # released although the forward failed


def test_mix_index_cache_is_per_tensor_not_per_address():
    """A new index tensor at the address (and version) of the last checked one is checked again (bug: the
    cache was keyed by data_ptr, so a freed index's memory reused for a bad one skipped the check)."""
    np = pytest.importorskip("numpy")
    arr = np.array([[0, 1]], dtype=np.int64)
    bank = torch.randn(4, 2)
    mix(bank, torch.ones(1, 2), torch.from_numpy(arr))            # checked, cached
    arr[0, 1] = 9                                                 # numpy write: no torch version bump
    again = torch.from_numpy(arr)                                 # same address, version 0, another tensor
    with pytest.raises(ShapeError, match="row 9"):
        mix(bank, torch.ones(1, 2), again)


def test_mix_error_messages_name_the_problem_and_the_fix():
    """The whole message, not a fragment: users read it to fix their call."""
    bank = torch.randn(3, 2)

    def message(*args):
        with pytest.raises(ShapeError) as e:
            mix(*args)
        return str(e.value)
    assert message(bank, [[1.0]]) == "mix: bank, coeff (and index) must be tensors; got Tensor, list"
    assert message(bank, torch.ones(1, 1), [[0]]) == "mix: bank, coeff (and index) must be tensors; got Tensor, Tensor, list"
    assert message(torch.ones(3, 2, dtype=torch.long), torch.ones(1, 3)) == (
        "mix: bank must be floating point, got int64; coefficients would be truncated to integers")
    assert message(torch.randn(3, 5), torch.ones(1, 2)) == "mix: dense coeff has 2 columns but the bank has 3 rows"
    assert message(bank, torch.ones(1, 1), torch.tensor([[3]])) == (
        "mix: index holds row 3, the bank has rows 0..2; index rows that exist")


def test_mix_casts_sparse_coefficients_to_the_bank_dtype():
    bank = torch.arange(6.0).reshape(3, 2)                                     # float32
    out = mix(bank, torch.tensor([[0.5, 2.0]], dtype=torch.float64), torch.tensor([[0, 2]]))
    assert out.dtype == torch.float32 and out.tolist() == [[0.5 * 0 + 2 * 4, 0.5 * 1 + 2 * 5]]


def test_mix_checks_an_unchanged_index_once(monkeypatch):
    calls = []
    real = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda t: calls.append(1) or real(t))
    bank, idx = torch.randn(4, 2), torch.tensor([[0, 3]])
    for _ in range(3):
        mix(bank, torch.ones(1, 2), idx)
    assert len(calls) == 1                                                     # cached: same tensor, version, rows
    mix(torch.randn(5, 2), torch.ones(1, 2), idx)                              # another bank size: checked again
    assert len(calls) == 2


def test_take_parameter_leaves_the_value_readable_and_names_what_exists():
    lin = nn.Linear(2, 3, bias=False)                                          # bias is registered as None
    w = lin.weight.detach().clone()
    v = take_parameter(lin, "weight")
    assert "weight" not in lin._parameters and lin.weight is v and torch.equal(v, w) and not v.requires_grad
    with pytest.raises(ShapeError) as e:
        take_parameter(lin, "bias")
    assert str(e.value) == "Linear has no parameter 'bias' to generate; it has []"
    with pytest.raises(ShapeError) as e:
        take_parameter(nn.Linear(2, 2), "kernel")
    assert str(e.value) == "Linear has no parameter 'kernel' to generate; it has ['bias', 'weight']"


def test_take_parameter_on_an_lstm_updates_its_flat_weights():
    """Every LSTM weight taken: the fused kernel must read the taken (detached) tensors, not the old Parameters."""
    lstm = nn.LSTM(2, 3)
    names = list(lstm._flat_weights_names)
    vals = {n: take_parameter(lstm, n) for n in names}
    for i, n in enumerate(names):
        assert lstm._flat_weights[i] is vals[n] and getattr(lstm, n) is vals[n]
    assert list(lstm.parameters()) == [] and not lstm(torch.randn(4, 1, 2))[0].requires_grad


def test_writer_errors_and_its_plan_is_computed_once():
    m = nn.Linear(2, 2)
    take_parameter(m, "weight")
    with pytest.raises(ShapeError) as e:
        WeightWriter([Slot(m, "weight", torch.Size([2, 2]), index=torch.arange(3))])
    assert str(e.value) == "slot weight: index has 3 entries for shape (2, 2)"
    w = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), offset=1)])
    src = torch.arange(6.0)
    assert w.tensors(src)[0].tolist() == [[1, 2], [3, 4]]
    plan = w._split_plan
    assert plan == (6, [1, 4, 1], [1])                                         # gap, the slot, the remainder
    w.tensors(src)
    assert w._split_plan is plan                                               # reused, not recomputed
    whole = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), offset=0)])
    whole.tensors(torch.arange(4.0))
    assert whole._split_plan == (4, [4], [0])                                  # no empty chunks around it


def test_writer_moves_its_gather_index_to_the_source_device():
    m = nn.Linear(2, 2)
    take_parameter(m, "weight")
    views = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), offset=0)])
    assert views.to(torch.device("meta")) is views                             # no gathers: nothing to move
    def gather():
        return WeightWriter([Slot(m, "weight", torch.Size([2, 2]), index=torch.tensor([3, 2, 1, 0]))])
    w = gather()
    assert w.to(torch.device("cpu")) is w and w._gather_index.device.type == "cpu"
    assert w.to(torch.device("meta")) is w and w._gather_index.device.type == "meta"
    w = gather()
    (t,) = w.tensors(torch.zeros(4, device="meta"))                            # a source elsewhere: index follows
    assert t.device.type == "meta" and w._gather_index.device.type == "meta"
    assert gather().tensors(torch.arange(4.0))[0].tolist() == [[3, 2], [1, 0]]


def test_release_keeps_a_tensor_that_is_not_in_a_graph():
    m = nn.Linear(2, 2)
    take_parameter(m, "weight")
    w = WeightWriter([Slot(m, "weight", torch.Size([2, 2]), offset=0)])
    with torch.no_grad():
        w.write(torch.arange(4.0))
    before = m.weight
    w.detach()
    assert m.weight is before                                                  # nothing to release: untouched
    w.write(torch.arange(4.0, requires_grad=True))
    assert m.weight.grad_fn is not None
    w.detach()
    assert m.weight.grad_fn is None and m.weight.tolist() == [[0, 1], [2, 3]]


def test_generated_model_passes_keyword_arguments():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 2, bias=False)

        def forward(self, x, scale=1.0):
            return self.lin(x) * scale
    inner = Scaled()
    model = GeneratedModel(inner, _Gen(inner.lin))                             # weight = [[0, 3], [6, 9]]
    x = torch.ones(1, 2)
    assert model(x, scale=2.0).tolist() == [[6.0, 30.0]]


def _plain_mix(bank, coeff, index):
    """The reference: embedding_bag with its own backward."""
    return torch.nn.functional.embedding_bag(index, bank, per_sample_weights=coeff, mode="sum")


@pytest.mark.parametrize("P", [1, 3, 32, 33])
def test_sparse_mix_gradients_equal_embedding_bags_on_narrow_and_wide_rows(P):
    """Rows used several times, by one output twice, and not at all; both leaves, then each alone."""
    g = torch.Generator().manual_seed(P)
    bank = torch.randn(7, P, dtype=torch.float64, generator=g)
    index = torch.tensor([[0, 3, 3], [6, 0, 2], [2, 2, 2], [5, 0, 3]])       # rows 1 and 4 unused
    coeff = torch.randn(4, 3, dtype=torch.float64, generator=g)
    up = torch.randn(4, P, dtype=torch.float64, generator=g)
    for needs in [(True, True), (True, False), (False, True)]:
        a = [t.clone().requires_grad_(r) for t, r in zip((bank, coeff), needs)]
        b = [t.clone().requires_grad_(r) for t, r in zip((bank, coeff), needs)]
        out_a, out_b = mix(a[0], a[1], index), _plain_mix(b[0], b[1], index)
        assert torch.equal(out_a, out_b)
        assert (type(out_a.grad_fn).__name__ == "_SparseMixBackward") == (P <= 32)
        out_a.backward(up), out_b.backward(up)
        for x, y in zip(a, b):
            assert (x.grad is None) == (y.grad is None)
            if x.grad is not None:
                torch.testing.assert_close(x.grad, y.grad, rtol=1e-12, atol=1e-12)
    assert torch.equal(a[1].grad[:, :0], torch.zeros(4, 0, dtype=torch.float64))
    assert torch.autograd.gradcheck(mix, (bank.clone().requires_grad_(), coeff.clone().requires_grad_(), index))
    if P <= 32:                                     # embedding_bag's own backward has no derivative
        assert torch.autograd.gradgradcheck(mix, (bank.clone().requires_grad_(), coeff.clone().requires_grad_(),
                                                  index))


def test_sparse_mix_transposed_index_follows_an_in_place_change_and_a_new_tensor():
    """The cached transposed index must not outlive the index it was made from."""
    bank = torch.randn(5, 4, requires_grad=True)
    coeff = torch.ones(2, 2)
    index = torch.tensor([[0, 1], [1, 2]])

    def bank_grad(idx):
        bank.grad = None
        mix(bank, coeff, idx).sum().backward()
        return bank.grad.sum(1) / 4                                            # uses per row
    assert bank_grad(index).tolist() == [1, 2, 1, 0, 0]
    index[1, 1] = 4                                                            # same tensor, changed in place
    assert bank_grad(index).tolist() == [1, 2, 0, 0, 1]
    assert bank_grad(torch.tensor([[3, 3], [3, 3]])).tolist() == [0, 0, 0, 4, 0]
    assert bank_grad(index).tolist() == [1, 2, 0, 0, 1]


def test_sparse_mix_is_not_used_without_gradients_under_torch_func_or_compile(monkeypatch):
    import importlib
    core_mix = importlib.import_module("tessera.core.mix")     # the module (the package exports the function)
    bank, coeff, index = torch.randn(3, 2, requires_grad=True), torch.ones(1, 2), torch.tensor([[0, 2]])
    with torch.no_grad():
        assert mix(bank, coeff, index).grad_fn is None
    assert mix(bank.detach(), coeff, index).grad_fn is None
    g = torch.func.grad(lambda b: mix(b, coeff, index).sum())(bank.detach())     # under torch.func: the plain op
    assert g.tolist() == [[1.0, 1.0], [0.0, 0.0], [1.0, 1.0]]
    monkeypatch.setattr(core_mix.torch.compiler, "is_compiling", lambda: True)
    assert type(mix(bank, coeff, index).grad_fn).__name__ == "EmbeddingBagBackward0"


def test_sparse_mix_caches_eight_transposed_indexes_and_sorts_stably(monkeypatch):
    import importlib
    core_mix = importlib.import_module("tessera.core.mix")
    core_mix._transposed.clear()
    sorts = []
    real = torch.argsort
    monkeypatch.setattr(torch, "argsort", lambda *a, **k: sorts.append(1) or real(*a, **k))

    def transpose(idx):
        n = len(sorts)
        core_mix._transpose(idx, 4)
        return len(sorts) > n                                                  # sorted again?
    keep = [torch.tensor([[i % 4, (i + 1) % 4]]) for i in range(10)]         # fresh tensors: all version 0
    assert transpose(keep[0]) and transpose(keep[1]) and not transpose(keep[0])   # another tensor, same version
    for i in range(2, 8):
        assert transpose(keep[i])
    assert not transpose(keep[0])                                              # 8 held: the first still there
    assert transpose(keep[8]) and transpose(keep[0])                           # the 9th pushed out the oldest
    for _ in range(8):                                                         # one tensor changed in place 8x:
        keep[2][0, 0] = (keep[2][0, 0] + 1) % 4                                # its stale entries are dropped,
        assert transpose(keep[2])
    assert not transpose(keep[0]) and not transpose(keep[8])                   # not the others
    big = torch.randint(0, 3, (4000, 5), generator=torch.Generator().manual_seed(0))
    order, users, offsets = core_mix._transpose(big, 4)
    flat = big.reshape(-1)
    assert torch.equal(order, real(flat, stable=True))                        # equal rows keep their order
    assert torch.equal(users, order // 5) and offsets.tolist() == [0, *torch.bincount(flat).cumsum(0).tolist()][:4]


def test_tensor_cache_keys_versions_and_size():
    from tessera.core.cache import TensorCache
    cache, made = TensorCache(2), []

    def get(t, key):
        return cache.get(t, key, lambda: made.append((key, t.tolist())) or len(made))
    a, b, c = torch.tensor([1]), torch.tensor([2]), torch.tensor([3])
    assert [get(a, "x"), get(a, "y"), get(a, "x")] == [1, 2, 1]              # one tensor, two keys
    assert get(b, "x") == 3 and get(a, "y") == 2 and get(a, "x") == 4      # size 2: (a, "x") went first
    c.add_(1)
    assert get(c, "x") == 5 and get(c, "x") == 5
    cache.clear()
    assert get(c, "x") == 6


def test_sparse_mix_transposed_index_depends_on_the_bank_rows():
    import importlib
    core_mix = importlib.import_module("tessera.core.mix")
    idx = torch.tensor([[0, 1]])
    assert core_mix._transpose(idx, 2)[2].tolist() == [0, 1]
    assert core_mix._transpose(idx, 4)[2].tolist() == [0, 1, 2, 2]         # the same index, a larger bank
