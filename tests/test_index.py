"""The model index: the checkpoint files are the truth, and concurrent saves keep every entry."""
import json
import multiprocessing
import time

import pytest
import torch

from slmlib import checkpoint
from slmlib.__main__ import main
from slmlib.checkpoint import INDEX_FILE, read_index, save_model
from slmlib.model import TinyGPT
from slmlib.tokenizer import Vocab


def _save(config, path, val_loss, update_index=True):
    vocab = Vocab.from_texts(["Once upon a time there was a cat."])
    torch.manual_seed(0)
    model = TinyGPT.from_config(config, len(vocab))
    return save_model(model, path, config, vocab, {"final": {"val_loss": val_loss}}, {"train_tokens": 9},
                      update_index=update_index)


@pytest.fixture
def folder(tiny_config, tmp_path):
    """Two models, one of them an experiment, recorded in the index; plus files that are not models."""
    _save(tiny_config, tmp_path / "a.pt", 1.0)
    _save(tiny_config, tmp_path / "experiments" / "b.pt", 2.0)
    (tmp_path / "a.resume.pt").write_bytes((tmp_path / "a.pt").read_bytes())
    (tmp_path / "a.previous.pt").write_bytes((tmp_path / "a.pt").read_bytes())
    return tmp_path


def _on_disk(folder):
    return json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))


def test_saves_are_indexed_with_relative_names(folder):
    assert set(_on_disk(folder)["models"]) == {"a.pt", "experiments/b.pt"}
    models = read_index(folder)["models"]
    assert models["experiments/b.pt"]["file"] == "experiments/b.pt" and models["experiments/b.pt"]["val_loss"] == 2.0
    assert not list((folder / "experiments").glob("*.json")), "one index, in the models folder"


@pytest.mark.parametrize("content", [None, '{"models": []}', '{"models": {}}', "[1, 2, 3]", "{broken",
                                     '{"models": {"a.pt": 5, "gone.pt": {"file": "gone.pt"}}}'],
                         ids=["missing", "models-list", "models-empty", "wrong-shape", "not-json", "junk-entries"])
def test_a_wrong_index_is_repaired_from_the_files(folder, content, capsys):
    index = folder / INDEX_FILE
    index.unlink()
    if content is not None:
        index.write_text(content, encoding="utf-8")
    models = read_index(folder)["models"]
    assert set(models) == {"a.pt", "experiments/b.pt"}
    assert models["a.pt"]["val_loss"] == 1.0 and models["a.pt"]["params"] > 0
    assert set(_on_disk(folder)["models"]) == {"a.pt", "experiments/b.pt"}, "the file is repaired too"
    assert main(["info", "--models", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Saved models in" in out and "| experiments/b.pt | ultra_tiny |" in out


@pytest.mark.parametrize("content", [None, '{"models": []}', "[1, 2, 3]"])
def test_saving_one_model_keeps_the_others(folder, tiny_config, content):
    (folder / INDEX_FILE).unlink()
    if content is not None:
        (folder / INDEX_FILE).write_text(content, encoding="utf-8")
    _save(tiny_config, folder / "c.pt", 3.0)
    assert set(_on_disk(folder)["models"]) == {"a.pt", "experiments/b.pt", "c.pt"}


def test_damaged_and_deleted_checkpoints_are_not_listed_with_old_losses(folder, tiny_config):
    data = (folder / "a.pt").read_bytes()
    (folder / "a.pt").write_bytes(data[: len(data) // 2])
    (folder / "experiments" / "b.pt").unlink()
    index = read_index(folder)
    assert index["models"] == {}
    assert "a.pt" in index["unreadable"] and index["unreadable"]["a.pt"]["reason"]
    assert set(_on_disk(folder)["unreadable"]) == {"a.pt"} and _on_disk(folder)["models"] == {}
    _save(tiny_config, folder / "a.pt", 4.0)  # trained again: listed again, with its new loss
    index = read_index(folder)
    assert index["models"]["a.pt"]["val_loss"] == 4.0 and index["unreadable"] == {}


def test_unchanged_files_are_not_opened_again(folder, monkeypatch):
    read_index(folder)
    opened = []
    monkeypatch.setattr(checkpoint, "read_checkpoint", lambda path, *a: opened.append(path))
    assert set(read_index(folder)["models"]) == {"a.pt", "experiments/b.pt"} and opened == []


def test_a_missing_folder_reads_as_empty_and_is_not_created(tmp_path):
    assert read_index(tmp_path / "nowhere")["models"] == {}
    assert not (tmp_path / "nowhere").exists()


# ---------------------------------------------------------------- concurrent saves

def _save_many(config, folder, tag, n, go):
    """One of two processes: wait for the start signal, then save n models into the same folder."""
    go.wait(60)
    for i in range(n):
        _save(config, folder / f"{tag}{i:03d}.pt", float(i))


def test_two_processes_saving_at_once_keep_every_entry(tiny_config, tmp_path):
    # fork: the children start at once with torch already imported (one OpenMP thread: safe to fork)
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    procs = [ctx.Process(target=_save_many, args=(tiny_config, tmp_path, tag, 50, go)) for tag in "pq"]
    for p in procs:
        p.start()
    with checkpoint._index_locked(tmp_path) as locked:  # first, show that the lock holds saves back
        assert locked
        go.set()
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"{t}000.pt").exists() for t in "pq") and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert all(p.is_alive() for p in procs) and not (tmp_path / INDEX_FILE).exists(), \
            "both checkpoints are written, and both index updates wait for the lock"
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    expected = {f"{t}{i:03d}.pt" for t in "pq" for i in range(50)}
    assert set(_on_disk(tmp_path)["models"]) == expected, "the index file itself, before any repair"
    assert set(read_index(tmp_path)["models"]) == expected
