"""`python -m slmlib data prepare-tinystories`: tokenize TinyStories once, on every core.

The real train file is about 2 GB of text, minutes of GPT-2 tokenizing even on many cores, so it
is done once and training streams the result from disk (slmlib/prepared.py). As nanoGPT's
data/openwebtext/prepare.py does, with two changes for an ordinary machine:
- the file is read as a stream and worker processes get it a chunk of CHUNK_STORIES stories at a
  time, so the text is never all in memory;
- each finished chunk is kept as its own file in DEST/.parts/, so a run stopped by Ctrl-C (or a
  crash) continues where it stopped. Every file is written atomically; meta.json comes last and
  marks the corpus as complete.
"""
from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from .data import TINYSTORIES_FILES, DataFileError, gpt2_stream, iter_stories
from .paths import atomic_write
from .prepared import DTYPE, FORMAT, META_FILE, SPLIT_FILES, PreparedCorpusError, is_prepared, read_meta
from .tokenizer import EOT_ID, EOT_TEXT, GPT2_VOCAB_SIZE, Vocab

CHUNK_STORIES = 20_000  # about 4M tokens, 8 MB on disk: small enough to lose little to a Ctrl-C
PARTS_DIR = ".parts"


def prepare_tinystories(src: Path | str, dest: Path | str, workers: int | None = None,
                        chunk_stories: int = CHUNK_STORIES, progress: bool = True) -> dict:
    """Tokenize src's TinyStoriesV2 train and valid files into dest; returns what was done per split."""
    src, dest = Path(src), Path(dest)
    sources = {split: src / TINYSTORIES_FILES[split] for split in SPLIT_FILES}
    missing = [path.name for path in sources.values() if not path.is_file()]
    if missing:
        raise DataFileError(f"{' and '.join(missing)} not found in {src}. Download them on a machine with "
                            f"internet (`python -m slmlib data download-tinystories --which train valid "
                            f"--dest {src}`), or give the folder that holds them with --src.")
    stamps = {split: _stamp(path, chunk_stories) for split, path in sources.items()}
    if _already_prepared(dest, stamps):
        print(f"{dest} is already prepared from these files: nothing to do.")
        return {}
    workers = workers or os.cpu_count() or 1
    summary, splits = {}, {}
    seen = np.zeros(GPT2_VOCAB_SIZE, dtype=bool)  # which GPT-2 ids occur: the compact vocabulary
    with multiprocessing.Pool(workers, initializer=_ignore_ctrl_c) as pool:
        for split, path in sources.items():
            parts_dir = _parts_dir(dest, split, stamps[split])
            try:
                parts, tokenized = _tokenize_in_chunks(pool, path, parts_dir, chunk_stories, workers, progress)
            except KeyboardInterrupt:
                kept = len(list(parts_dir.glob("*.bin")))
                print(f"\nInterrupted: {kept} finished chunk(s) of {path.name} are kept in {parts_dir}. "
                      "Run the same command again to continue.")
                raise
            splits[split] = _join(parts, dest / SPLIT_FILES[split], seen)
            splits[split]["source"] = path.name
            summary[split] = {"stories": splits[split]["stories"], "tokens": splits[split]["tokens"],
                              "chunks": len(parts), "tokenized": tokenized, "reused": len(parts) - tokenized}
    vocab = Vocab(np.flatnonzero(seen).tolist())
    meta = {"format": FORMAT, "tokenizer": "gpt2", "dtype": np.dtype(DTYPE).name, "sources": stamps,
            "vocab_size": len(vocab), "splits": splits, "vocab": vocab.to_dict()}
    atomic_write(dest / META_FILE, lambda tmp: Path(tmp).write_text(json.dumps(meta) + "\n", encoding="utf-8"))
    shutil.rmtree(dest / PARTS_DIR, ignore_errors=True)
    for split, row in summary.items():
        print(f"{dest / SPLIT_FILES[split]}: {row['stories']:,} stories, {row['tokens']:,} tokens "
              f"({row['tokenized']} chunk(s) tokenized now, {row['reused']} kept from an earlier run)")
    print(f"{dest / META_FILE}: compact vocabulary of {len(vocab):,} ids. Train on it with "
          f"corpus='{dest}' (e.g. `python -m slmlib train --level tinystories_gpu --corpus {dest}`).")
    return summary


def _already_prepared(dest: Path, stamps: dict) -> bool:
    try:
        return is_prepared(dest) and read_meta(dest).get("sources") == stamps
    except PreparedCorpusError:  # unfinished or damaged: prepare it again
        return False


def _ignore_ctrl_c() -> None:
    """Workers ignore Ctrl-C: the main process stops them when the pool closes, and a chunk
    they were writing is never half there (atomic writes)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stamp(path: Path, chunk_stories: int) -> dict:
    """What a chunk's content depends on: the source file (as far as a stat tells) and the chunk size."""
    st = path.stat()
    return {"file": path.name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "chunk_stories": chunk_stories}


def _parts_dir(dest: Path, split: str, stamp: dict) -> Path:
    """dest/.parts/<split>, emptied if its chunks came from another file or chunk size."""
    parts_dir = dest / PARTS_DIR / split
    stamp_file = parts_dir / "source.json"
    try:
        same = json.loads(stamp_file.read_text(encoding="utf-8")) == stamp
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(parts_dir, ignore_errors=True)
        parts_dir.mkdir(parents=True)
        atomic_write(stamp_file, lambda tmp: Path(tmp).write_text(json.dumps(stamp), encoding="utf-8"))
    for leftover in parts_dir.glob(".*.tmp"):  # a write that a hard kill cut short
        leftover.unlink(missing_ok=True)
    return parts_dir


def _chunks(stories: Iterable[str], size: int) -> Iterator[list[str]]:
    stories = iter(stories)
    while chunk := list(itertools.islice(stories, size)):
        yield chunk


def _tokenize_chunk(texts: list[str], part: str) -> None:
    """In a worker: the chunk's GPT-2 ids (story, <|endoftext|>, ...) into its own file."""
    ids = gpt2_stream(texts).numpy().astype(DTYPE)
    atomic_write(Path(part), ids.tofile)


def _tokenize_in_chunks(pool, path: Path, parts_dir: Path, chunk_stories: int, workers: int,
                        progress: bool) -> tuple[list[Path], int]:
    """Every chunk of the file tokenized into parts_dir (chunks already there are skipped)."""
    from .progress import progress_bar

    hint = "Download it again (`python -m slmlib data download-tinystories`)."
    bar = progress_bar(total=path.stat().st_size, desc=f"tokenizing {path.name}", unit="B", unit_scale=True,
               dynamic_ncols=True, disable=not progress)
    separator_bytes = len(f"\n{EOT_TEXT}\n")
    parts, pending, tokenized = [], deque(), 0
    try:
        for i, texts in enumerate(_chunks(iter_stories(path, hint=hint), chunk_stories)):
            part = parts_dir / f"{i:06d}.bin"
            parts.append(part)
            read = sum(len(t.encode("utf-8")) + separator_bytes for t in texts)  # about the file's bytes
            if part.is_file():
                bar.update(read)
                continue
            pending.append((pool.apply_async(_tokenize_chunk, (texts, str(part))), read))
            tokenized += 1
            while len(pending) > 2 * workers:  # read ahead only this far: memory stays flat
                result, read = pending.popleft()
                result.get()
                bar.update(read)
        for result, read in pending:
            result.get()
            bar.update(read)
    finally:
        bar.close()
    return parts, tokenized


def _join(parts: list[Path], out: Path, seen: np.ndarray) -> dict:
    """The chunks, in order, as one flat token file; their story and token counts; the ids seen."""
    chunks = []

    def write(tmp):
        with open(tmp, "wb") as f:
            for part in parts:
                ids = np.fromfile(part, dtype=DTYPE)
                chunks.append([int(np.count_nonzero(ids == EOT_ID)), int(ids.size)])
                seen[ids] = True
                ids.tofile(f)

    atomic_write(out, write)
    return {"file": out.name, "stories": sum(s for s, _ in chunks), "tokens": sum(t for _, t in chunks),
            "chunks": chunks}
