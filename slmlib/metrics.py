"""Numbers that say how good a model is, beyond its loss.

- perplexity: exp(loss), "how many tokens the model is choosing between" on average.
- gap: val loss - train loss. Big gap = the model learned its training stories, not stories.
- distance to the floor: val loss - the generator's entropy. No model can go below the floor
  on new stories; what is left above it is what the model has not learned yet.
- memorisation: how much of the generated text is copied verbatim from the training stories,
  and the recital test: given the start of a story, does the model go on with the real words?
- distinct-n and real-word share: is the text varied, and is it made of real words?
"""
from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence

from .data import fresh_stories, words_of
from .generation import generate_text


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


def chance_copying(training: TrainingText, n: int = 20, seed: int = 99) -> dict:
    """What brand-new stories from the generator share with the training stories by chance.

    The baseline for every copy count: stories from one generator share phrases ("Once upon a
    time, there was a little") without anyone copying anything.
    """
    mem = [memorization(s.text, training) for s in fresh_stories(n, seed)]
    key = f"copied_{training.n}gram_share"
    return {key: round(statistics.mean(m[key] for m in mem), 4),
            "longest_copied_words": round(statistics.median(m["longest_copied_words"] for m in mem)),
            "stories": n}


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


def matching_words(generated: Sequence[str], real: Sequence[str]) -> int:
    """How many words, from the start, the generated continuation gets exactly right."""
    n = 0
    for g, r in zip(generated, real):
        if g != r:
            break
        n += 1
    return n


def recital(model, vocab, train_texts: Sequence[str], unseen_texts: Sequence[str], n: int = 20,
            prompt_words: int = 25, continue_words: int = 20) -> dict:
    """Memorisation you can measure: prompt with a story's first words, continue greedily.

    For n training stories and n stories the model never saw, the model gets the first
    `prompt_words` words and continues with its single most likely token each time (greedy,
    so no luck is involved). We count how many of the next `continue_words` real words it
    reproduces before its first mistake. A model that *generalises* does about as well on both
    sides; a model that has *memorised* recites its training stories far better.
    """
    sides = {}
    for side, texts in (("train", train_texts), ("unseen", unseen_texts)):
        stories = [t for t in texts if len(t.split()) >= prompt_words + continue_words]
        step = max(1, len(stories) // n)
        examples = []
        for text in stories[::step][:n]:
            spans = list(re.finditer(r"\S+", text))
            prompt = text[: spans[prompt_words - 1].end()]  # the story's own spacing and line breaks
            real = [m.group() for m in spans[prompt_words: prompt_words + continue_words]]
            out = generate_text(model, vocab, prompt, max_new_tokens=2 * continue_words,
                                temperature=0, seed=None)
            generated = out[len(prompt):].split()[:continue_words]
            examples.append({"prompt": prompt, "real": real, "generated": generated,
                             "matched": matching_words(generated, real)})
        matched = [e["matched"] for e in examples]
        sides[side] = {"stories": len(examples), "matched_words": round(statistics.mean(matched), 2) if matched else 0.0,
                       "exact_share": round(sum(m == continue_words for m in matched) / max(1, len(matched)), 3),
                       "examples": examples}
    ratio = sides["train"]["matched_words"] / max(sides["unseen"]["matched_words"], 0.05)
    return {**sides, "continue_words": continue_words, "prompt_words": prompt_words, "ratio": round(ratio, 1)}
