"""GPT-2 tokens, offline, and the compact vocabulary the models train on.

`tiktoken.get_encoding("gpt2")` downloads its ranks file on first use, which fails in
an offline classroom. The course ships that file in `data/gpt2.tiktoken` and builds the
identical encoding from it.

The models do not need all 50,257 GPT-2 ids: the stories use a couple of thousand.
`Vocab` maps the ids that occur in the corpus to 0..V-1, so the output layer (and its
softmax, which dominates a tiny model's compute) is ~20x smaller. Text still goes in and
out as GPT-2 tokens.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tiktoken
import tiktoken.load

from .errors import CourseError
from .paths import DATA_DIR

if TYPE_CHECKING:  # for the annotations only: importing torch here would slow every `import slmlib.tokenizer`
    import torch

RANKS_FILE = DATA_DIR / "gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
EOT_TEXT = "<|endoftext|>"
EOT_ID = 50256
GPT2_VOCAB_SIZE = 50257
# The regex GPT-2 splits text with before BPE (the same as tiktoken's own "gpt2").
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class TokenizerFileError(CourseError, RuntimeError):
    """The shipped GPT-2 ranks file is missing or damaged."""


@functools.cache
def gpt2(ranks_file: Path | str = RANKS_FILE) -> tiktoken.Encoding:
    """The GPT-2 encoding, built from the ranks file shipped in data/ (no network)."""
    path = Path(ranks_file)
    if not path.is_file():
        raise TokenizerFileError(
            f"GPT-2 tokenizer file not found: {path}. It ships with the course; restore it with "
            f"`git checkout -- {path.name}` in data/ (see data/README.md for its source)."
        )
    try:
        raw = path.read_bytes()
    except OSError as e:  # permission denied, a folder of that name, an I/O error
        raise TokenizerFileError(
            f"cannot read the GPT-2 tokenizer file {path}: {e.strerror or e}. Make it readable "
            f"(e.g. `chmod u+r {path}`), or restore it with `git checkout -- data/{path.name}`."
        ) from None
    digest = hashlib.sha256(raw).hexdigest()
    if digest != RANKS_SHA256:
        raise TokenizerFileError(
            f"GPT-2 tokenizer file {path} is damaged (sha256 {digest[:12]}..., expected "
            f"{RANKS_SHA256[:12]}...). Restore it with `git checkout -- data/{path.name}`."
        )
    ranks = tiktoken.load.load_tiktoken_bpe(str(path), expected_hash=RANKS_SHA256)
    return tiktoken.Encoding(
        name="gpt2",
        explicit_n_vocab=GPT2_VOCAB_SIZE,
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={EOT_TEXT: EOT_ID},
    )


def encode_gpt2(text: str) -> list[int]:
    """GPT-2 ids of `text`; the literal `<|endoftext|>` becomes the separator token."""
    return gpt2().encode(text, allowed_special={EOT_TEXT})


class Vocab:
    """Maps GPT-2 ids to compact ids 0..V-1 and back.

    Compact id 0 is `<|endoftext|>`, 1 is "unknown" (a GPT-2 id never seen in the corpus),
    then the corpus ids in increasing GPT-2 order. With `full=True` the map is the identity
    on all 50,257 GPT-2 ids (for comparing speed with the real GPT-2 output layer).
    """

    EOT = 0
    UNK = 1

    def __init__(self, gpt2_ids: Iterable[int], full: bool = False):
        self.full = full
        if full:
            self.gpt2_ids = list(range(GPT2_VOCAB_SIZE))
            self.eot_id = EOT_ID
            self.unk_id = None
        else:
            corpus_ids = sorted(set(gpt2_ids) - {EOT_ID})
            self.gpt2_ids = [EOT_ID, -1] + corpus_ids  # -1: the unknown slot has no GPT-2 id
            self.eot_id = self.EOT
            self.unk_id = self.UNK
        self._to_compact = {g: i for i, g in enumerate(self.gpt2_ids) if g >= 0}
        self._lut = None  # GPT-2 id -> compact id table, built on first use

    @classmethod
    def from_texts(cls, texts: Iterable[str], full: bool = False) -> "Vocab":
        ids: set[int] = set()
        for text in texts:
            ids.update(encode_gpt2(text))
        return cls(ids, full=full)

    def __len__(self) -> int:
        return len(self.gpt2_ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        kind = "full GPT-2" if self.full else "compact"
        return f"Vocab({kind}, {len(self)} ids)"

    def from_gpt2(self, ids: Sequence[int], warn: bool = True) -> list[int]:
        """Compact ids for GPT-2 ids; unseen ids become UNK (with one warning)."""
        out = [self._to_compact.get(i, self.unk_id) for i in ids]
        if warn and self.unk_id is not None:
            unknown = [i for i in ids if i not in self._to_compact]
            if unknown:
                pieces = ", ".join(repr(gpt2().decode([i])) for i in unknown[:5])
                warnings.warn(
                    f"{len(unknown)} token(s) never appear in the training stories ({pieces}); "
                    "the model sees them as <unk>. Try words from the stories.",
                    stacklevel=3,
                )
        return out

    def from_gpt2_tensor(self, ids: "torch.Tensor") -> "torch.Tensor":
        """Vectorised from_gpt2 for long streams (no warning: corpus text is all known)."""
        import torch

        if self._lut is None:
            lut = torch.full((GPT2_VOCAB_SIZE,), self.unk_id if self.unk_id is not None else 0, dtype=torch.long)
            known = torch.tensor(list(self._to_compact.items()), dtype=torch.long)
            lut[known[:, 0]] = known[:, 1]
            self._lut = lut
        return self._lut[ids.long()]

    def encode(self, text: str, warn: bool = True) -> list[int]:
        return self.from_gpt2(encode_gpt2(text), warn=warn)

    def decode(self, ids: Sequence[int]) -> str:
        """Text for compact ids; an unknown id shows as `<unk>`."""
        parts: list[str] = []
        run: list[int] = []
        for i in ids:
            g = self.gpt2_ids[int(i)]
            if g < 0:
                parts.append(gpt2().decode(run))
                parts.append("<unk>")
                run = []
            else:
                run.append(g)
        parts.append(gpt2().decode(run))
        return "".join(parts)

    def to_dict(self) -> dict:
        """Plain types only, so it can sit in a `weights_only=True` checkpoint."""
        return {"full": self.full, "gpt2_ids": [] if self.full else list(self.gpt2_ids)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        if d.get("full"):
            return cls([], full=True)
        ids = list(d["gpt2_ids"])
        if ids[:2] != [EOT_ID, -1]:
            raise ValueError("vocabulary map is malformed: it must start with <|endoftext|> and <unk>")
        return cls(ids[2:])
