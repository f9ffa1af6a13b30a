"""PTB / WikiText-2 word-level readers on fake token files."""
from __future__ import annotations

import pytest
import torch

from tessera.data import Vocab, load_text
from tessera.errors import DataError


def _write(root, folder, files):
    (root / folder).mkdir(parents=True)
    for name, text in files.items():
        (root / folder / name).write_text(text)


def test_ptb_vocab_from_train_and_eos(tmp_path):
    _write(tmp_path, "ptb", {"ptb.train.txt": " the cat sat \n the <unk> ran \n",
                             "ptb.valid.txt": " the dog sat \n", "ptb.test.txt": " cat \n"})
    ids, vocab = load_text("ptb", "train", root=tmp_path, verify=False)
    assert vocab.source == "train" and vocab.itos == ["the", "cat", "sat", "<eos>", "<unk>", "ran"]
    assert vocab.decode(ids) == ["the", "cat", "sat", "<eos>", "the", "<unk>", "ran", "<eos>"]
    assert ids.dtype == torch.int64 and len(vocab) == 6
    vids, v2 = load_text("ptb", "valid", root=tmp_path, verify=False)
    assert v2.itos == vocab.itos
    assert v2.decode(vids) == ["the", "<unk>", "sat", "<eos>"]  # "dog" is not in the train vocab


def test_wikitext2_without_train(tmp_path):
    _write(tmp_path, "wikitext2", {"wiki.valid.tokens": " = A = \n\n alpha beta \n",
                                   "wiki.test.tokens": " gamma alpha \n"})
    with pytest.warns(UserWarning, match="train split missing"):
        ids, vocab = load_text("wikitext2", "test", root=tmp_path, verify=False)
    assert vocab.source == "valid+test" and "gamma" in vocab and "beta" in vocab
    assert vocab.decode(ids) == ["gamma", "alpha", "<eos>"]
    with pytest.raises(DataError) as e:
        load_text("wikitext2", "train", root=tmp_path, verify=False)
    assert "wiki.train.tokens" in str(e.value) and "wikitext-2-v1.zip" in str(e.value)


def test_vocab_without_unk_refuses_unknown_words():
    v = Vocab.build([["a", "b"]])
    assert v.encode(["b", "a"]).tolist() == [1, 0]
    with pytest.raises(DataError, match="'z'"):
        v.encode(["z"])


def test_load_text_rejects_other_names(tmp_path):
    with pytest.raises(DataError, match="not a text dataset"):
        load_text("mnist", root=tmp_path)
