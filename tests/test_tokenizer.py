import socket

import pytest

from slmlib import tokenizer
from slmlib.tokenizer import EOT_ID, Vocab, encode_gpt2, gpt2


def test_hello_world_matches_gpt2():
    assert gpt2().encode("Hello world") == [15496, 995]
    assert gpt2().n_vocab == 50257
    assert encode_gpt2("Hi<|endoftext|>") [-1] == EOT_ID


def test_works_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokenizer.gpt2.cache_clear()
    assert gpt2().decode(gpt2().encode("Once upon a time")) == "Once upon a time"


def test_damaged_ranks_file_is_reported(tmp_path):
    bad = tmp_path / "gpt2.tiktoken"
    bad.write_text("not ranks")
    with pytest.raises(tokenizer.TokenizerFileError, match="damaged"):
        gpt2(bad)
    with pytest.raises(tokenizer.TokenizerFileError, match="not found"):
        gpt2(tmp_path / "missing.tiktoken")


def test_compact_vocab_round_trip_and_unknown_ids():
    vocab = Vocab.from_texts(["The cat sat on the mat.", "A dog ran."])
    ids = vocab.encode("The dog sat.")
    assert max(ids) < len(vocab) and vocab.decode(ids) == "The dog sat."
    with pytest.warns(UserWarning, match="never appear"):
        ids = vocab.encode("The zebra sat.")
    assert Vocab.UNK in ids and "<unk>" in vocab.decode(ids)
    assert Vocab.from_dict(vocab.to_dict()) == vocab


def test_full_vocab_is_gpt2_identity():
    full = Vocab([], full=True)
    assert len(full) == 50257
    assert full.encode("Hello world") == [15496, 995]
    assert full.eot_id == EOT_ID
    assert Vocab.from_dict(full.to_dict()).full
