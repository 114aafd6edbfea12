"""Numbers that say how good a model is, beyond its loss.

- perplexity: exp(loss), "how many tokens the model is choosing between" on average.
- gap: val loss - train loss. Big gap = the model learned its training stories, not stories.
- distance to the floor: val loss - the generator's entropy. No model can go below the floor
  on new stories; what is left above it is what the model has not learned yet.
- memorisation: how much of the generated text is copied verbatim from the training stories.
- distinct-n and real-word share: is the text varied, and is it made of real words?
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .data import words_of


def perplexity(loss: float) -> float:
    return math.exp(loss)


def gap(train_loss: float, val_loss: float) -> float:
    return val_loss - train_loss


def ngrams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]


class TrainingText:
    """The training stories, indexed for fast "was this copied?" questions."""

    def __init__(self, texts: Iterable[str], n: int = 8):
        self.n = n
        story_words = [words_of(t) for t in texts]
        # Spaces around every word, so a phrase only matches whole words.
        self.blob = " " + " | ".join(" ".join(w) for w in story_words) + " "
        self.ngram_set = {g for w in story_words for g in ngrams(w, n)}
        self.words = {w for ws in story_words for w in ws}

    def contains(self, phrase: Sequence[str]) -> bool:
        return f" {' '.join(phrase)} " in self.blob


def memorization(generated: str, training: TrainingText) -> dict:
    """Longest verbatim span (in words) and share of word n-grams copied from training."""
    words = words_of(generated)
    longest, i = 0, 0
    for i in range(len(words)):
        # Only try spans longer than the best so far: each extension is one substring search.
        while i + longest < len(words) and training.contains(words[i: i + longest + 1]):
            longest += 1
    grams = ngrams(words, training.n)
    copied = sum(g in training.ngram_set for g in grams)
    return {"longest_copied_words": longest,
            f"copied_{training.n}gram_share": round(copied / len(grams), 4) if grams else 0.0,
            "words": len(words)}


def distinct_n(texts: Iterable[str], n: int = 2) -> float:
    """Unique word n-grams / all word n-grams (1.0 = no repetition)."""
    grams = [g for t in texts for g in ngrams(words_of(t), n)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def real_word_share(text: str, known_words: set[str]) -> float:
    """Share of generated words that exist in the corpus (made-up words count against)."""
    words = words_of(text)
    return round(sum(w in known_words for w in words) / len(words), 4) if words else 0.0


def text_quality(samples: Sequence[str], training: TrainingText, known_words: set[str] | None = None) -> dict:
    """All the text metrics for a set of generated samples, averaged."""
    known = known_words if known_words is not None else training.words
    mem = [memorization(s, training) for s in samples]
    key = f"copied_{training.n}gram_share"
    return {
        "samples": len(samples),
        "longest_copied_words": max((m["longest_copied_words"] for m in mem), default=0),
        key: round(sum(m[key] for m in mem) / max(1, len(mem)), 4),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "real_word_share": round(sum(real_word_share(s, known) for s in samples) / max(1, len(samples)), 4),
    }
