"""Story files on disk, the real TinyStories reader, and batches for training.

Files use the TinyStoriesV2 text format: stories separated by a line `<|endoftext|>`.
The course's own splits live in data/ (train 10,000, val 1,000, test 1,000 stories, each
from its own generator seed); level N trains on the first N train stories.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import corpus, paths
from .errors import CourseError, UsageError, is_real_number, is_whole_number
from .paths import atomic_write
from .prepared import is_prepared, load_prepared
from .tables import format_table
from .tokenizer import EOT_ID, EOT_TEXT, Vocab, gpt2

SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
SPLIT_SIZES = {"train": 10_000, "val": 1_000, "test": 1_000}
STATS_FILE = "stats.json"
# Where the token cache goes (outputs/.cache/ under it); None: paths.outputs_dir(), read when the cache is.
OUTPUTS_DIR: Path | None = None
REBUILD_HINT = "Regenerate the course data with `python -m slmlib data build` (or `git checkout -- data/`)."

TINYSTORIES_URL = "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/"
TINYSTORIES_FILES = {"train": "TinyStoriesV2-GPT4-train.txt", "valid": "TinyStoriesV2-GPT4-valid.txt"}


class DataFileError(CourseError, RuntimeError):
    """A story file is missing, empty or unreadable; the message says how to fix it."""


class DownloadError(CourseError, RuntimeError):
    """TinyStories could not be downloaded (usually: no internet)."""


def split_path(split: str, data_dir: Path | str | None = None) -> Path:
    if split not in SPLIT_SEEDS:
        raise UsageError(f"unknown split {split!r}; valid splits: {', '.join(SPLIT_SEEDS)}")
    return paths.data_dir(data_dir) / f"stories_{split}.txt"


HANDWRITTEN_FILE = "handwritten_stories.txt"


def handwritten_path(data_dir: Path | str | None = None) -> Path:
    """Children's stories written by hand, not by the generator: for evaluation only (never
    trained on, never in the vocabulary). Committed as written; `data build` does not touch it."""
    return paths.data_dir(data_dir) / HANDWRITTEN_FILE


# ---------------------------------------------------------------- reading and writing files

# Far longer than any story (TinyStories' are under 5,000 characters): text this long without a
# separator line means the file is not in the TinyStoriesV2 format.
MAX_STORY_CHARS = 1_000_000


def unreadable(path: Path, e: OSError, what: str = "story file") -> DataFileError:
    """The error for a file that exists but cannot be read (permissions, a folder, an I/O error)."""
    fix = (f"Make it readable, e.g. `chmod u+r {path}`." if isinstance(e, PermissionError)
           else "Check the file and the disk it is on.")
    return DataFileError(f"cannot read {what} {path}: {e.strerror or e}. {fix}")


def no_separators(path: Path, hint: str) -> DataFileError:
    return DataFileError(f"story file {path} has no `{EOT_TEXT}` separator lines, so it would train as one "
                         f"giant story; in the TinyStoriesV2 format every story ends with a line "
                         f"`{EOT_TEXT}`. {hint}")


def iter_stories(path: Path | str, limit: int | None = None, hint: str = REBUILD_HINT) -> Iterator[str]:
    """Stories from a TinyStoriesV2-format file, streamed (the real train file is 2 GB)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"story file not found: {path}. {hint}")
    count, lines, chars, separators = 0, [], 0, 0
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip() == EOT_TEXT:
                    separators += 1
                    story = "".join(lines).strip()
                    lines, chars = [], 0
                    if story:
                        yield story
                        count += 1
                        if limit is not None and count >= limit:
                            return
                else:
                    lines.append(line)
                    chars += len(line)
                    if chars > MAX_STORY_CHARS:
                        raise no_separators(path, hint)
    except UnicodeDecodeError as e:
        raise DataFileError(f"story file {path} is not UTF-8 text ({e.reason} at byte {e.start}). {hint}") from None
    except OSError as e:
        raise unreadable(path, e) from None
    story = "".join(lines).strip()
    if story and separators == 0:
        raise no_separators(path, hint)
    if story and (limit is None or count < limit):
        yield story
        count += 1
    if count == 0:
        raise DataFileError(f"story file {path} holds no stories (it is empty). {hint}")


def read_stories(path: Path | str, limit: int | None = None, hint: str = REBUILD_HINT) -> list[str]:
    return list(iter_stories(path, limit, hint))


def format_stories(stories: Sequence[str]) -> str:
    return "".join(f"{s}\n{EOT_TEXT}\n" for s in stories)


def write_atomic(path: Path, text: str) -> None:
    """Write text via a temp file + rename, so an interrupted write never leaves half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", newline="\n"))


# ---------------------------------------------------------------- building the course data

def words_of(text: str) -> list[str]:
    """Lower-case words (letters only), the unit the data sheet and word metrics count."""
    return re.findall(r"[a-z]+", text.lower())


def floor_nats_per_token(stories: Sequence[corpus.Story]) -> float:
    """The generator's own entropy, per GPT-2 token (one <|endoftext|> counted per story)."""
    tokens = sum(len(ids) + 1 for ids in gpt2().encode_ordinary_batch([s.text for s in stories]))
    return -sum(s.logprob for s in stories) / tokens


def fresh_stories(n: int, seed: int = 2026) -> list[corpus.Story]:
    """Brand-new stories from the generator (seeds 1-3 are the committed splits)."""
    if seed in SPLIT_SEEDS.values():
        raise UsageError(f"seed {seed} is used by a committed split; pick another seed")
    return corpus.generate_stories(n, seed)


def text_stats(texts: Sequence[str], logprobs: Sequence[float] | None = None) -> dict:
    ids = gpt2().encode_ordinary_batch(list(texts))
    tokens = sum(len(x) + 1 for x in ids)
    words = [w for t in texts for w in words_of(t)]
    out = {"stories": len(texts), "gpt2_tokens": tokens, "words": len(words),
           "distinct_words": len(set(words))}
    if logprobs is not None:
        out["floor_nats_per_token"] = round(-sum(logprobs) / tokens, 4)
    return out


def handwritten_stats(vocab: Vocab, course_texts: Sequence[str], path: Path | None = None) -> dict:
    """The hand-written stories' size, and how much of them the course's vocabulary and stories cover."""
    path = Path(path or handwritten_path())
    texts = read_stories(path, hint="It is committed with the course: `git checkout -- data/handwritten_stories.txt`.")
    ids = [i for story in gpt2().encode_ordinary_batch(texts) for i in story]
    unknown = sum(c == vocab.unk_id for c in vocab.from_gpt2(ids, warn=False))
    course_words = {w for t in course_texts for w in words_of(t)}
    return text_stats(texts) | {
        "unknown_tokens": unknown, "unknown_token_share": round(unknown / len(ids), 4),
        "words_never_in_course_stories": len({w for t in texts for w in words_of(t)} - course_words),
        "sha256": file_sha256(path, "hand-written story file")}


def build_splits(data_dir: Path | str | None = None, progress: bool = True) -> dict:
    """Regenerate the committed splits and data/stats.json (byte-identical every time)."""
    from .config import LEVELS  # here, not at the top: config does not depend on data

    data_dir = paths.data_dir(data_dir)
    stats: dict = {"generator_seeds": SPLIT_SEEDS, "splits": {}, "levels": {}}
    all_texts: list[str] = []
    for split, n in SPLIT_SIZES.items():
        stories = corpus.generate_stories(n, SPLIT_SEEDS[split])
        text = format_stories([s.text for s in stories])
        write_atomic(split_path(split, data_dir), text)
        texts = [s.text for s in stories]
        all_texts += texts
        stats["splits"][split] = text_stats(texts, [s.logprob for s in stories]) | {
            "sha256": hashlib.sha256(text.encode()).hexdigest()}
        if split == "train":
            for cfg in LEVELS.values():
                sub = stories[: cfg.stories]
                stats["levels"][cfg.name] = text_stats([s.text for s in sub], [s.logprob for s in sub])
        if progress:
            print(f"wrote {split_path(split, data_dir)}: {n} stories")
    vocab = Vocab.from_texts(all_texts)
    stats["compact_vocab_size"] = len(vocab)
    stats["generator_vocabulary_words"] = len(corpus.vocabulary())
    if handwritten_path().is_file():  # the committed copy, whatever data_dir is: it is not generated
        stats["handwritten"] = handwritten_stats(vocab, all_texts)
    write_atomic(data_dir / STATS_FILE, json.dumps(stats, indent=2) + "\n")
    write_atomic(data_dir / "README.md", data_sheet(stats, read_stories(split_path("train", data_dir), 1)[0]))
    return stats


def data_sheet(stats: dict, sample: str) -> str:
    """data/README.md, written from the measured statistics (never edited by hand)."""

    cols = ["name", "stories", "gpt2_tokens", "words", "distinct_words", "floor_nats_per_token"]
    splits = format_table([{"name": k, **v} for k, v in stats["splits"].items()], cols)
    levels = format_table([{"name": k, **v} for k, v in stats["levels"].items()], cols)
    return f"""# Data sheet

Generated by `python -m slmlib data build` (also `make data`), which rewrites every file in
this folder except `gpt2.tiktoken` and `handwritten_stories.txt`, byte for byte the same each
time (a test checks it).
Do not edit by hand.

## Files
| file | what |
|---|---|
| `stories_train.txt` | 10,000 training stories (generator seed {SPLIT_SEEDS['train']}); level N trains on the first N |
| `stories_val.txt` | 1,000 validation stories (seed {SPLIT_SEEDS['val']}): the "val" curve in the lessons |
| `stories_test.txt` | 1,000 held-out test stories (seed {SPLIT_SEEDS['test']}): "new data" in lesson 08 |
| `stats.json` | the numbers below, plus each split's sha256 |
| `gpt2.tiktoken` | GPT-2's BPE ranks, so the tokenizer works offline (see Credits) |
| `handwritten_stories.txt` | short children's stories written by hand, not by the generator: an evaluation set from beyond the generator's world (below) |

Format: the TinyStoriesV2 text format, each story followed by a line `<|endoftext|>`, so real
TinyStories files load through the same reader (`slmlib.data.load_tinystories`).

## Measured
Compact vocabulary (GPT-2 ids that occur in any split, plus `<|endoftext|>` and `<unk>`):
**{stats['compact_vocab_size']:,} ids**. Words the generator can write: {stats['generator_vocabulary_words']:,}.
Tokens count one `<|endoftext|>` per story. Words are lower-cased runs of letters.

Per split:

{splits}

Per level (the first N training stories):

{levels}

**Entropy floor** (nats per GPT-2 token): the generator's total -log-probability of the
choices it made for the stories, divided by their tokens: the loss a perfect model of the
generator would reach on new stories. It is an upper bound on the true floor, since two
different choice paths could (rarely) write the same text.
{_handwritten_section(stats.get('handwritten'))}
## One sample (the first training story)

> {sample}

## Credits
`gpt2.tiktoken` is GPT-2's tokenizer ranks file from the MIT-licensed `openai-whisper` package
(`pip download --no-deps openai-whisper==20250625`, file `whisper/assets/gpt2.tiktoken`,
sha256 `306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930`),
Copyright (c) 2022 OpenAI. The stories are written by this course's generator
(`slmlib/corpus.py`) in the style of TinyStories (Eldan & Li, 2023).
"""


def _handwritten_section(hw: dict | None) -> str:
    if not hw:
        return ""
    return f"""
## Hand-written stories: beyond the generator's world

`handwritten_stories.txt` holds {hw['stories']} short children's stories in simple English, written by
hand for this course (not by `slmlib/corpus.py`, nor after its templates): other names, plots and
styles (a letter, a rhyme, a dialogue, first-person and present-tense tellings). Each story is one
paragraph, as the generator's are, so the comparison is about words and plots, not line breaks.
They are **never trained on and never added to the vocabulary**: `python -m slmlib test`, lesson 08
and lesson 10 score every model on them (`slmlib.surprise.score_handwritten`).

| stories | gpt2_tokens | words | distinct_words | words never in the course stories | tokens outside the compact vocabulary |
|---|---|---|---|---|---|
| {hw['stories']} | {hw['gpt2_tokens']:,} | {hw['words']:,} | {hw['distinct_words']:,} | {hw['words_never_in_course_stories']:,} | {hw['unknown_tokens']:,} ({hw['unknown_token_share']:.1%}) |

Tokens outside the compact vocabulary reach a model as `<unk>`: it cannot read or write those
pieces of a person's words. There is no entropy floor for these stories: nobody knows the
probability of a story a person wrote. sha256 `{hw['sha256']}`.
"""


def load_stats(data_dir: Path | str | None = None) -> dict:
    """data/stats.json, checked: every number the course reads from it has the right type and range."""
    path = paths.data_dir(data_dir) / STATS_FILE
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataFileError(f"data statistics not found: {path}. {REBUILD_HINT}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFileError(f"data statistics file {path} is corrupt ({e}). {REBUILD_HINT}") from None
    except OSError as e:
        raise unreadable(path, e, "data statistics file") from None
    problem = stats_problem(stats)
    if problem:
        raise DataFileError(f"data statistics file {path} has the wrong shape: {problem}. {REBUILD_HINT}")
    return stats


def stats_problem(stats) -> str | None:
    """What is wrong with a stats.json's content, in a few words (None if nothing)."""
    def entry_problem(where: str, entry, needs_hash: bool) -> str | None:
        if not isinstance(entry, dict):
            return f"{where} is {entry!r}, not a table of numbers"
        checks = [("stories", is_whole_number, "a whole number"),
                  ("floor_nats_per_token", lambda v: is_real_number(v) and v > 0, "a positive number")]
        if needs_hash:
            checks += [("gpt2_tokens", is_whole_number, "a whole number"),
                       ("sha256", lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v),
                        "a sha256 hex digest")]
        for key, ok, kind in checks:
            if key not in entry:
                return f"{where}.{key} is missing"
            if not ok(entry[key]) or (key == "stories" and entry[key] < 1):
                return f"{where}.{key} is {entry[key]!r}, not {kind}"
        return None

    if not isinstance(stats, dict):
        return f"it holds {type(stats).__name__} {str(stats)[:40]}, not a table"
    for part in ("splits", "levels"):
        if not isinstance(stats.get(part), dict):
            return f"{part} is {stats.get(part, 'missing')!r}, not a table" if part in stats else f"{part} is missing"
    for split in SPLIT_SEEDS:
        if split not in stats["splits"]:
            return f"splits.{split} (the {split} split) is missing"
        problem = entry_problem(f"splits.{split}", stats["splits"][split], needs_hash=True)
        if problem:
            return problem
    for level, entry in stats["levels"].items():
        problem = entry_problem(f"levels.{level}", entry, needs_hash=False)
        if problem:
            return problem
    if not is_whole_number(stats.get("compact_vocab_size")) or stats["compact_vocab_size"] < 3:
        return f"compact_vocab_size is {stats.get('compact_vocab_size', 'missing')!r}, not a whole number"
    return None


# Checking a split's sha256 costs ~20 ms per process; it is remembered per file size and mtime,
# so only a changed file is hashed again.
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path, what: str = "story file") -> str:
    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _HASHES:
            with open(path, "rb") as f:
                _HASHES[key] = hashlib.file_digest(f, hashlib.sha256).hexdigest()
    except FileNotFoundError:
        raise DataFileError(f"{what} not found: {path}. {REBUILD_HINT}") from None
    except OSError as e:
        raise unreadable(path, e, what) from None
    return _HASHES[key]


def verify_split(path: Path, split: str, data_dir: Path | str | None = None) -> str:
    """The split file's sha256, if it is the one data/stats.json records; else a DataFileError saying how."""
    path = Path(path)
    digest = file_sha256(path, f"the {split} split")
    recorded = {name: entry["sha256"] for name, entry in load_stats(data_dir)["splits"].items()}
    if digest != recorded[split]:
        copy_of = next((name for name, sha in recorded.items() if sha == digest), None)
        what = (f"is a copy of the {copy_of} split, so the {split} numbers would measure the wrong stories"
                if copy_of else f"does not match the sha256 that {STATS_FILE} records (it was changed or "
                f"truncated: {digest[:12]}... instead of {recorded[split][:12]}...)")
        raise DataFileError(f"the {split} split {path} {what}. {REBUILD_HINT}")
    return digest


# ---------------------------------------------------------------- token streams for training

def gpt2_stream(texts: Sequence[str]) -> torch.Tensor:
    """GPT-2 ids of story, <|endoftext|>, story, <|endoftext|>, ... in one tokenizer call."""
    joined = EOT_TEXT.join(texts) + EOT_TEXT  # the special token splits stories, as separate encodes would
    return torch.tensor(gpt2().encode(joined, allowed_special={EOT_TEXT}), dtype=torch.int32)


@functools.cache
def _course_split_texts(split: str, data_dir: str) -> tuple[str, ...]:
    verify_split(split_path(split, data_dir), split, data_dir)
    return tuple(read_stories(split_path(split, data_dir)))


@functools.cache
def _course_split_stream(split: str, data_dir: str) -> torch.Tensor:
    """A split's GPT-2 ids, cached on disk by file hash: every notebook kernel needs them.

    The cache says what it is of (split, the split file's sha256) and holds its stream's length and
    sha256, checked at every read: a cache copied over another split's, or cut short, is rebuilt.
    """
    path = split_path(split, data_dir)
    digest = verify_split(path, split, data_dir)
    cache = paths.outputs_dir(OUTPUTS_DIR) / ".cache" / f"{path.stem}-{digest[:16]}.pt"
    stream = _read_token_cache(cache, split, digest)
    if stream is None:  # missing, damaged or someone else's: it is only a cache
        stream = gpt2_stream(_course_split_texts(split, data_dir))
        entry = {"split": split, "split_sha256": digest, "length": stream.numel(),
                 "stream_sha256": _tensor_sha256(stream), "stream": stream}
        try:
            atomic_write(cache, lambda tmp: torch.save(entry, tmp))
        except OSError:
            pass  # a read-only outputs/ just means no cache
    return stream


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().numpy().tobytes()).hexdigest()


def _read_token_cache(cache: Path, split: str, digest: str) -> torch.Tensor | None:
    """The cached stream if the file is exactly the cache of this split file, else None."""
    try:
        entry = torch.load(cache, weights_only=True)
    except Exception:  # missing, unreadable, truncated, not a torch file
        return None
    if not isinstance(entry, dict) or entry.get("split") != split or entry.get("split_sha256") != digest:
        return None  # an older cache format, or another split's cache copied over this one
    stream = entry.get("stream")
    if (not torch.is_tensor(stream) or stream.dtype != torch.int32 or stream.dim() != 1
            or stream.numel() != entry.get("length") or _tensor_sha256(stream) != entry.get("stream_sha256")):
        return None  # cut short or edited
    return stream


def _first_stories(stream: torch.Tensor, n: int) -> torch.Tensor:
    ends = (stream == EOT_ID).nonzero().flatten()
    return stream[: int(ends[n - 1]) + 1] if n < len(ends) else stream


@functools.cache
def _course_vocab(data_dir: str) -> Vocab:
    return Vocab(torch.cat([_course_split_stream(s, data_dir) for s in SPLIT_SEEDS]).unique().tolist())


def to_token_tensor(texts: Sequence[str], vocab: Vocab, stream: torch.Tensor | None = None) -> torch.Tensor:
    """Compact ids of the stories as one stream (pass `stream` if the GPT-2 ids are known)."""
    stream = gpt2_stream(texts) if stream is None else stream
    return vocab.from_gpt2_tensor(stream)


@dataclass
class LevelData:
    """Everything a training run reads: token streams, vocabulary, and what they came from."""

    vocab: Vocab
    train_texts: list[str]
    val_texts: list[str]
    test_texts: list[str]
    source: str
    floor: dict = field(default_factory=dict)  # nats/token per split, when known
    gpt2_streams: dict = field(default_factory=dict, repr=False)  # optional precomputed GPT-2 ids
    train: torch.Tensor = field(init=False)
    val: torch.Tensor = field(init=False)
    test: torch.Tensor = field(init=False)

    def __post_init__(self):
        for split in ("train", "val", "test"):
            texts = getattr(self, f"{split}_texts")
            setattr(self, split, to_token_tensor(texts, self.vocab, self.gpt2_streams.get(split)))
        self.gpt2_streams = {}  # not needed any more

    def stats(self) -> dict:
        return {"source": self.source, "stories": len(self.train_texts),
                "train_tokens": int(self.train.numel()), "val_tokens": int(self.val.numel()),
                "vocab_size": len(self.vocab), "full_vocab": self.vocab.full,
                "floor": dict(self.floor)}


def load_data(config, data_dir: Path | str | None = None) -> LevelData:
    """The data for one level: its first `config.stories` train stories, val and test."""
    if config.corpus != "stories" and is_prepared(config.corpus):  # tokenized once, read from disk
        return load_prepared(config.corpus, config.stories, full_vocab=config.full_vocab)
    if config.corpus != "stories":
        return load_tinystories(config.corpus, config.stories, full_vocab=config.full_vocab)
    data_dir = str(paths.data_dir(data_dir).resolve())
    for split in SPLIT_SEEDS:  # every split, before any work: a damaged one is named with the fix
        verify_split(split_path(split, data_dir), split, data_dir)
    train = list(_course_split_texts("train", data_dir))
    if config.stories > len(train):
        raise UsageError(f"level {config.name} wants stories={config.stories} but the train split "
                         f"has {len(train)}; use stories={len(train)} or fewer")
    vocab = Vocab([], full=True) if config.full_vocab else _course_vocab(data_dir)
    stats = load_stats(data_dir)  # checked: every floor is a positive number
    floor = {"val": stats["splits"]["val"]["floor_nats_per_token"],
             "test": stats["splits"]["test"]["floor_nats_per_token"]}
    level_stats = stats["levels"].get(config.name)
    if level_stats is not None and level_stats["stories"] == config.stories:
        floor["train"] = level_stats["floor_nats_per_token"]
    streams = {"train": _first_stories(_course_split_stream("train", data_dir), config.stories),
               "val": _course_split_stream("val", data_dir), "test": _course_split_stream("test", data_dir)}
    return LevelData(vocab, train[: config.stories], list(_course_split_texts("val", data_dir)),
                     list(_course_split_texts("test", data_dir)), source="course stories", floor=floor,
                     gpt2_streams=streams)


# ---------------------------------------------------------------- real TinyStories

def load_tinystories(folder: Path | str, n_train: int, n_val: int = 1000, n_test: int = 1000,
                     full_vocab: bool = False) -> LevelData:
    """Real TinyStories: the first n_train stories of the train file; val and test from the valid file."""
    folder = Path(folder)
    hint = (f"Put {TINYSTORIES_FILES['train']} and {TINYSTORIES_FILES['valid']} in {folder} "
            f"(`python -m slmlib data download-tinystories --dest {folder}` on a machine with internet).")
    train = read_stories(folder / TINYSTORIES_FILES["train"], n_train, hint)
    if len(train) < n_train:  # never train on 3 stories and record 200
        raise DataFileError(f"{folder / TINYSTORIES_FILES['train']} holds only {len(train)} stories, but "
                            f"{n_train} were asked for; use stories={len(train)} or fewer "
                            f"(cfg.replace(stories={len(train)})), or the full train file. {hint}")
    valid = read_stories(folder / TINYSTORIES_FILES["valid"], n_val + n_test, hint)
    if len(valid) < 2:
        raise DataFileError(f"{folder / TINYSTORIES_FILES['valid']} needs at least 2 stories. {hint}")
    n_val = min(n_val, len(valid) // 2)
    val, test = valid[:n_val], valid[n_val: n_val + n_test]
    vocab = Vocab([], full=True) if full_vocab else Vocab.from_texts(train + val + test)
    return LevelData(vocab, train, val, test, source=f"TinyStories ({folder})")


def download_tinystories(dest: Path | str | None = None, which: Sequence[str] = ("valid",),
                         base_url: str = TINYSTORIES_URL, timeout: float = 30) -> list[Path]:
    """Download TinyStoriesV2 files (valid: 22 MB, train: 2.2 GB) into dest (default data/tinystories/).
    Needs the internet."""
    dest = Path(dest) if dest is not None else paths.data_dir() / "tinystories"
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for key in which:
        if key not in TINYSTORIES_FILES:
            raise UsageError(f"unknown TinyStories file {key!r}; choose from {', '.join(TINYSTORIES_FILES)}")
        name = TINYSTORIES_FILES[key]
        target, url = dest / name, base_url + name
        if target.is_file() and target.stat().st_size > 0:
            files.append(target)
            continue
        tmp = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise DownloadError(
                f"could not download {url} ({getattr(e, 'reason', e)}). This needs the internet. "
                f"Offline, the course trains on its own stories (the default); to use TinyStories, "
                f"download {name} on a connected machine and copy it to {target}."
            ) from None
        os.replace(tmp, target)
        files.append(target)
    return files


# ---------------------------------------------------------------- batches

def get_batch(tokens: torch.Tensor, batch_size: int, block_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: x is block_size tokens, y the same window shifted by one."""
    if tokens.numel() <= block_size:
        raise UsageError(f"only {tokens.numel()} tokens, need more than block_size={block_size}: "
                         "use more stories or a smaller block_size")
    starts = torch.randint(tokens.numel() - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size + 1)
    windows = tokens[starts[:, None] + offsets]
    return windows[:, :-1], windows[:, 1:]


def eval_windows(tokens: torch.Tensor, n_windows: int, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed windows spread evenly over the split, so every run is measured on the same text."""
    last = tokens.numel() - block_size - 1
    if last < 0:
        raise UsageError(f"only {tokens.numel()} tokens, need more than block_size={block_size}: "
                         "use more stories or a smaller block_size")
    n = max(1, min(n_windows, math.ceil((last + 1) / block_size)))  # no more than cover the split
    starts = torch.linspace(0, last, n).round().long()
    windows = tokens[starts[:, None] + torch.arange(block_size + 1)]
    return windows[:, :-1], windows[:, 1:]
