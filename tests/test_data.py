import hashlib
import urllib.error

import pytest
import torch

from slmlib import data as D
from slmlib.config import LEVELS
from slmlib.tokenizer import gpt2

FIXTURE_STORIES = ["Once upon a time, a cat sat.\n\nThe end.", "Tom had a red ball. He was happy.",
                   "Sue saw a bird.", "A dog ran home.", "Max ate a pie."]


def test_committed_splits_regenerate_byte_identical(tmp_path):
    stats = D.build_splits(tmp_path, progress=False)
    committed = D.load_stats()
    for split in D.SPLIT_SEEDS:
        new, old = D.split_path(split, tmp_path), D.split_path(split)
        assert new.read_bytes() == old.read_bytes(), f"{split} split differs from data/: run `make data`"
        assert hashlib.sha256(old.read_bytes()).hexdigest() == committed["splits"][split]["sha256"]
    assert stats == committed


def test_split_sizes_and_level_prefixes():
    stats = D.load_stats()
    assert {s: stats["splits"][s]["stories"] for s in D.SPLIT_SEEDS} == D.SPLIT_SIZES
    for cfg in LEVELS.values():
        assert stats["levels"][cfg.name]["stories"] == cfg.stories
    tiny = D.load_data(LEVELS["tiny"])
    assert len(tiny.train_texts) == 200 and tiny.train_texts == D.read_stories(D.split_path("train"), 200)


def test_every_split_round_trips_through_gpt2_exactly():
    enc = gpt2()
    for split in D.SPLIT_SEEDS:
        stories = D.read_stories(D.split_path(split))
        for ids, text in zip(enc.encode_ordinary_batch(stories), stories):
            assert enc.decode(ids) == text


def test_compact_vocab_covers_the_corpus():
    d = D.load_data(LEVELS["ultra_tiny"])
    assert d.vocab.UNK not in d.train.tolist() + d.val.tolist() + d.test.tolist()
    assert len(d.vocab) == D.load_stats()["compact_vocab_size"] < 10_000
    assert d.vocab.decode(d.train[:50].tolist()) in "\n<|endoftext|>\n".join(d.train_texts)


def test_floor_is_reported_per_split():
    d = D.load_data(LEVELS["small"])
    assert 0 < d.floor["val"] < 3 and 0 < d.floor["test"] < 3 and 0 < d.floor["train"] < 3


def test_fresh_stories_are_new_and_reproducible():
    a, b = D.fresh_stories(5, seed=99), D.fresh_stories(5, seed=99)
    assert [s.text for s in a] == [s.text for s in b]
    assert not set(s.text for s in a) & set(D.read_stories(D.split_path("val")))
    with pytest.raises(ValueError, match="committed split"):
        D.fresh_stories(5, seed=2)


@pytest.mark.parametrize("content, message", [
    (None, "not found"), (b"", "empty"), (b"\n<|endoftext|>\n  \n", "empty"),
    (b"Once \xff\xfe upon", "not UTF-8"),
])
def test_bad_story_files_name_the_file_and_the_fix(tmp_path, content, message):
    path = tmp_path / "stories.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(D.DataFileError, match=message) as err:
        D.read_stories(path)
    assert str(path) in str(err.value) and "slmlib data build" in str(err.value)


def _write_tinystories(folder, n_train=5, n_valid=4):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / D.TINYSTORIES_FILES["train"]).write_text(D.format_stories((FIXTURE_STORIES * 2)[:n_train]))
    (folder / D.TINYSTORIES_FILES["valid"]).write_text(D.format_stories(FIXTURE_STORIES[::-1][:n_valid]))
    return folder


def test_tinystories_reader_uses_the_same_data_api(tmp_path):
    folder = _write_tinystories(tmp_path / "ts")
    d = D.load_tinystories(folder, n_train=3, n_val=2, n_test=2)
    assert d.train_texts == FIXTURE_STORIES[:3] and len(d.val_texts) == 2 and len(d.test_texts) == 2
    assert "\n\n" in d.train_texts[0]  # paragraphs inside a story survive
    cfg = LEVELS["ultra_tiny"].replace(corpus=str(folder), stories=3)
    assert D.load_data(cfg).train_texts == FIXTURE_STORIES[:3]
    x, y = D.get_batch(d.train, 2, 8, torch.Generator().manual_seed(0))
    assert x.shape == (2, 8) and torch.equal(x[:, 1:], y[:, :-1])


def test_tinystories_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(D.DataFileError, match="download-tinystories"):
        D.load_tinystories(tmp_path, n_train=3)


def test_download_from_a_local_mirror(tmp_path):
    mirror = _write_tinystories(tmp_path / "mirror")
    paths = D.download_tinystories(tmp_path / "dest", which=["valid", "train"], base_url=mirror.as_uri() + "/")
    assert [p.read_text() for p in paths] == [
        (mirror / D.TINYSTORIES_FILES[k]).read_text() for k in ("valid", "train")]


def test_download_offline_fails_clearly(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(D.urllib.request, "urlopen", offline)
    with pytest.raises(D.DownloadError, match="needs the internet") as err:
        D.download_tinystories(tmp_path)
    assert "copy it to" in str(err.value) and not list(tmp_path.glob("*.part"))


def test_eval_windows_are_fixed_and_cover_the_split():
    tokens = torch.arange(1000)
    x1, _ = D.eval_windows(tokens, 50, 32)
    x2, _ = D.eval_windows(tokens, 50, 32)
    assert torch.equal(x1, x2) and x1.shape == (31, 32)  # capped at what covers the split once
    assert x1[0, 0] == 0 and x1[-1, -1] == 998
