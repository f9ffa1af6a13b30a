"""The small causal transformer LM, and LeNet + LSTM LM + transformer LM sharing one hypermodule bank."""
import copy

import torch

from tessera.hyper import export, reparameterize
from tessera.hyper.models import LeNet, LSTMLanguageModel, TransformerLM, detach_state


def _tf(**kw):
    torch.manual_seed(0)
    return TransformerLM(30, 16, layers=2, heads=2, dropout=0.0, memory=3, max_len=16, **kw).eval()


def test_transformer_lm_is_causal_and_reads_its_memory():
    lm = _tf()
    x = torch.randint(0, 30, (6, 2))
    logits, state = lm(x)
    assert logits.shape == (12, 30) and torch.equal(state, x[-3:])
    y = x.clone()
    y[4] = (y[4] + 1) % 30                                          # change step 4: steps 0-3 must not move
    changed = lm(y)[0].view(6, 2, 30)
    torch.testing.assert_close(changed[:4], logits.view(6, 2, 30)[:4])
    assert not torch.allclose(changed[4], logits.view(6, 2, 30)[4])
    nxt = torch.randint(0, 30, (2, 2))
    with_memory = lm(nxt, detach_state(state))[0]
    whole = lm(torch.cat([x[-3:], nxt]))[0][-4:]                    # the same 5-token window in one call
    torch.testing.assert_close(with_memory, whole)
    assert not torch.allclose(with_memory, lm(nxt)[0])              # the memory is read
    assert lm.decoder.weight is lm.encoder.weight and not _tf(tie=False).decoder.weight is _tf().encoder.weight


def test_cnn_lstm_lm_and_transformer_lm_share_one_bank():
    torch.manual_seed(0)
    models = [LeNet(channels=16, hidden=(32, 16)), LSTMLanguageModel(30, 16, layers=1, dropout=0.0),
              TransformerLM(30, 16, layers=1, heads=2, dropout=0.0, memory=2, max_len=16)]
    originals = copy.deepcopy(models)
    muir = reparameterize(models, block=(16, 16), context=2, lam=1, p=1.0, verbose=False)
    assert muir.targets == [["conv2.weight", "fc1.weight", "fc2.weight"], ["lstm.weight_ih_l0", "lstm.weight_hh_l0"],
                            ["layers.layers.0.self_attn.in_proj_weight", "layers.layers.0.self_attn.out_proj.weight",
                             "layers.layers.0.linear1.weight", "layers.layers.0.linear2.weight"]]
    # LeNet: 25 kernel positions + 16 x 2 + 2 x 1; LSTM: 4 + 4 gates; transformer: 3 (q, k, v) + 1 + 2 + 2
    assert muir.num_locations == (25 + 32 + 2) + 8 + 8
    xs = [torch.randn(2, 1, 28, 28), torch.randint(0, 30, (5, 2)), torch.randint(0, 30, (5, 2))]
    opt = torch.optim.Adam(muir.param_groups(lr=1e-2))
    for _ in range(2):
        muir.begin_generation(opt)
        opt.zero_grad()
        loss = muir[0](xs[0]).square().mean() + muir[1](xs[1])[0].square().mean() + muir[2](xs[2])[0].square().mean()
        loss.backward()
        opt.step()
        muir.end_generation()
    assert all(g.z.grad is not None and g.z.grad.abs().sum() > 0 for g in muir.generators)   # every model trains
    with torch.no_grad():
        plain = export(muir)
        for i, (p, o, x) in enumerate(zip(plain, originals, xs)):
            ref = muir[i](x)
            ref = ref if i == 0 else ref[0]
            o.load_state_dict(p.state_dict())
            assert torch.equal(o(x) if i == 0 else o(x)[0], ref)
        assert plain[2].decoder.weight is plain[2].encoder.weight
