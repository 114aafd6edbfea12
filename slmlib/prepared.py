"""A prepared corpus: TinyStories tokenized once, then read a window at a time from disk.

`python -m slmlib data prepare-tinystories` (slmlib/prepare.py) writes a folder with
  train.bin, valid.bin  every story's GPT-2 ids followed by <|endoftext|>, one flat uint16 array
                        per file (GPT-2's 50,257 ids fit in 16 bits), as nanoGPT's prepare.py does
  meta.json             the compact vocabulary over both files, and each file's story and token counts
Training reads random windows through a memory map, so the process never holds the corpus:
the real train file is about 2 GB of text. `TokenFile` acts like the token tensor that
`data.get_batch` and `data.eval_windows` index, so batches come out exactly as from memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import CourseError
from .tokenizer import EOT_ID, GPT2_VOCAB_SIZE, Vocab

META_FILE = "meta.json"
FORMAT = "slm-course prepared corpus v1"
DTYPE = np.uint16 if GPT2_VOCAB_SIZE <= 2 ** 16 else np.uint32
SPLIT_FILES = {"train": "train.bin", "valid": "valid.bin"}


class PreparedCorpusError(CourseError, RuntimeError):
    """A prepared corpus folder that is missing, unfinished or damaged; the message says how to fix it."""


def prepare_hint(folder: Path | str) -> str:
    return (f"Prepare it with `python -m slmlib data prepare-tinystories --src FOLDER_WITH_TINYSTORIES "
            f"--dest {folder}` (an interrupted run continues where it stopped).")


def is_prepared(folder: Path | str) -> bool:
    return (Path(folder) / META_FILE).is_file()


def read_meta(folder: Path | str) -> dict:
    """meta.json, checked against the token files beside it."""
    folder = Path(folder)
    path = folder / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PreparedCorpusError(f"{folder} is not a prepared corpus (no {META_FILE}). "
                                  f"{prepare_hint(folder)}") from None
    except (OSError, ValueError) as e:
        raise PreparedCorpusError(f"cannot read {path} ({e}). {prepare_hint(folder)}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise PreparedCorpusError(f"{path} is not a {FORMAT!r} file. {prepare_hint(folder)}")
    for split, name in SPLIT_FILES.items():
        try:
            expected = int(meta["splits"][split]["tokens"]) * np.dtype(DTYPE).itemsize
        except (KeyError, TypeError, ValueError):
            raise PreparedCorpusError(f"{path} has no token count for {split}: it was edited or damaged. "
                                      f"Delete it and prepare again. {prepare_hint(folder)}") from None
        size = (folder / name).stat().st_size if (folder / name).is_file() else None
        if size != expected:
            found = "is missing" if size is None else f"has {size:,} bytes, not {expected:,}"
            raise PreparedCorpusError(f"{folder / name} {found}: the prepared corpus is incomplete or "
                                      f"damaged. Delete {path} and prepare it again. {prepare_hint(folder)}")
    return meta


def story_end(path: Path, chunks: list[list[int]], n: int) -> int:
    """Token offset just after the n-th story (every story ends with <|endoftext|>).

    chunks: [stories, tokens] per chunk as prepared, so only the chunk holding story n is read.
    """
    stories_before = tokens_before = 0
    if n == 0:
        return 0
    for stories, tokens in chunks:
        if stories_before + stories >= n:
            ids = np.memmap(path, dtype=DTYPE, mode="r", offset=tokens_before * np.dtype(DTYPE).itemsize,
                            shape=(tokens,))
            ends = np.flatnonzero(ids == EOT_ID)
            return tokens_before + int(ends[n - stories_before - 1]) + 1
        stories_before += stories
        tokens_before += tokens
    raise ValueError(f"{path} holds {stories_before} stories, not {n}")


class TokenFile:
    """Tokens start..stop of a prepared file, as compact ids, indexed like a 1-D tensor.

    Only what `get_batch` and `eval_windows` need: numel() and indexing with a tensor of positions.
    """

    def __init__(self, path: Path | str, start: int, stop: int, vocab: Vocab):
        self.path, self.start, self.stop, self.vocab = Path(path), start, stop, vocab

    def numel(self) -> int:
        return self.stop - self.start

    def __len__(self) -> int:
        return self.numel()

    def __getitem__(self, positions: torch.Tensor) -> torch.Tensor:
        # A fresh memmap for every batch, as nanoGPT's train.py does: a long-lived one keeps every
        # page it ever touched mapped, so the process would grow towards the file's size.
        ids = np.memmap(self.path, dtype=DTYPE, mode="r")
        window = ids[self.start + positions.numpy()].astype(np.int64)
        return self.vocab.from_gpt2_tensor(torch.from_numpy(window))

    def __repr__(self) -> str:
        return f"TokenFile({self.path.name}, tokens {self.start:,}..{self.stop:,})"


@dataclass
class PreparedData:
    """A prepared corpus in the shape train() reads (`data.LevelData`'s fields, on disk)."""

    vocab: Vocab
    train: TokenFile
    val: TokenFile
    test: TokenFile
    source: str
    stories: int
    floor: dict = field(default_factory=dict)  # unknown for real text

    def stats(self) -> dict:
        return {"source": self.source, "stories": self.stories, "train_tokens": self.train.numel(),
                "val_tokens": self.val.numel(), "vocab_size": len(self.vocab), "full_vocab": self.vocab.full,
                "floor": dict(self.floor)}


def load_prepared(folder: Path | str, n_train: int, n_val: int = 1000, n_test: int = 1000,
                  full_vocab: bool = False) -> PreparedData:
    """The first n_train train stories; val and test are the valid file's first stories.

    The same split as `data.load_tinystories` makes from the text files.
    """
    folder = Path(folder)
    meta = read_meta(folder)
    train, valid = meta["splits"]["train"], meta["splits"]["valid"]
    if n_train > train["stories"]:
        raise PreparedCorpusError(f"{folder} holds {train['stories']:,} training stories, but {n_train:,} "
                                  f"were asked for; use stories={train['stories']} or fewer "
                                  f"(cfg.replace(stories={train['stories']})).")
    if valid["stories"] < 2:
        raise PreparedCorpusError(f"{folder / SPLIT_FILES['valid']} needs at least 2 stories. "
                                  f"{prepare_hint(folder)}")
    vocab = Vocab([], full=True) if full_vocab else Vocab.from_dict(meta["vocab"])
    train_path, valid_path = folder / SPLIT_FILES["train"], folder / SPLIT_FILES["valid"]
    n_val = min(n_val, valid["stories"] // 2)
    val_end = story_end(valid_path, valid["chunks"], n_val)
    test_end = story_end(valid_path, valid["chunks"], min(n_val + n_test, valid["stories"]))
    return PreparedData(vocab, train=TokenFile(train_path, 0, story_end(train_path, train["chunks"], n_train), vocab),
                        val=TokenFile(valid_path, 0, val_end, vocab),
                        test=TokenFile(valid_path, val_end, test_end, vocab),
                        source=f"TinyStories, prepared ({folder})", stories=n_train)
