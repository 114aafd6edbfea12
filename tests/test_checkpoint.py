import json

import pytest
import torch

from slmlib.checkpoint import FORMAT_VERSION, CheckpointError, load_model, read_index, save_model
from slmlib.model import TinyGPT
from slmlib.tokenizer import Vocab


@pytest.fixture
def saved(tiny_config, tmp_path):
    vocab = Vocab.from_texts(["Once upon a time there was a cat."])
    torch.manual_seed(0)
    model = TinyGPT.from_config(tiny_config, len(vocab))
    path = save_model(model, tmp_path / "m.pt", tiny_config, vocab, {"final": {"val_loss": 1.0}}, {"train_tokens": 9})
    return model, path, vocab


def test_round_trip_gives_same_logits_and_loads_weights_only(saved):
    model, path, vocab = saved
    raw = torch.load(path, weights_only=True)
    assert raw["format_version"] == FORMAT_VERSION and "model_state_dict" in raw and "config" in raw
    loaded, info = load_model(path)
    x = torch.tensor([vocab.encode("Once upon a time")])
    assert torch.equal(model.eval()(x)[0], loaded(x)[0])
    assert info["vocab"] == vocab and info["config"].n_embd == 16


def test_missing_file_says_how_to_train(tmp_path):
    with pytest.raises(CheckpointError, match="python -m slmlib train --level tiny"):
        load_model(level="tiny")
    with pytest.raises(CheckpointError, match="no model file"):
        load_model(tmp_path / "nope.pt")


def test_truncated_and_foreign_files(saved, tmp_path):
    _, path, _ = saved
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(truncated)
    text = tmp_path / "x.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(text)
    other = tmp_path / "o.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="not an SLM Course checkpoint"):
        load_model(other)


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"config": {}, "model_state_dict": {}, "payload": Vocab}, evil)  # a class: not plain data
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(evil)


def test_newer_format_and_mismatched_weights(saved, tmp_path):
    _, path, _ = saved
    ckpt = torch.load(path, weights_only=True)
    newer = dict(ckpt, format_version=FORMAT_VERSION + 1)
    torch.save(newer, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="newer than this slmlib"):
        load_model(tmp_path / "new.pt")
    wrong = dict(ckpt, config=dict(ckpt["config"], n_embd=32))
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "wrong.pt")


def test_save_is_atomic_and_keeps_old_file_on_failure(saved, monkeypatch, tiny_config):
    model, path, vocab = saved
    before = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        open(f, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_model(model, path, tiny_config, vocab)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_index_lists_models_and_survives_corruption(saved, tmp_path):
    assert read_index(tmp_path)["models"]["m.pt"]["level"] == "ultra_tiny"
    (tmp_path / "model_index.json").write_text("{broken")
    assert "m.pt" in read_index(tmp_path)["models"]  # rebuilt from the checkpoints
    assert json.loads((tmp_path / "model_index.json").read_text())["models"]["m.pt"]["params"] > 0
