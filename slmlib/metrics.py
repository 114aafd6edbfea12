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
        """Does the phrase appear word for word in one training story?"""
        # Each n words of a copied phrase are one of the training text's n-grams: set lookups rule out most
        # long phrases before the search through the whole text (megabytes at the large level).
        if any(tuple(phrase[i: i + self.n]) not in self.ngram_set for i in range(len(phrase) - self.n + 1)):
            return False
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


# Reference points for every loss (makemore starts from a bigram count model for this reason):
# a number of nats means little until it sits between "knows nothing" and "cannot do better".
def count_model_losses(train_tokens, windows, vocab_size: int) -> dict:
    """Losses (nats per token) of count models fitted on the training tokens, on fixed windows.

    - uniform: every token equally likely, ln(V): a model that learned nothing;
    - unigram: how often each token occurs, ignoring context (add-one smoothing);
    - bigram: how often each token follows the previous one, blended with the unigram where the
      previous token was rarely seen (Witten-Bell smoothing: the more different tokens followed
      a token in training, the more weight the unigram gets after it).
    Scored on the same (inputs, targets) windows as the transformer, so the numbers compare.
    """
    import torch

    train = train_tokens.long()
    V = vocab_size
    unigram = (torch.bincount(train, minlength=V).double() + 1) / (train.numel() + V)
    pairs = torch.bincount(train[:-1] * V + train[1:], minlength=V * V).double().view(V, V)
    seen = pairs.sum(1, keepdim=True)  # how often each token was followed by anything
    kinds = (pairs > 0).sum(1, keepdim=True).double()  # how many different tokens followed it
    weight = torch.where(seen > 0, seen / (seen + kinds), torch.zeros_like(seen))
    bigram = weight * pairs / seen.clamp(min=1) + (1 - weight) * unigram
    xs, ys = (w.long() for w in windows)
    return {"uniform": round(math.log(V), 4),
            "unigram": round(-unigram[ys].log().mean().item(), 4),
            "bigram": round(-bigram[xs, ys].log().mean().item(), 4)}


def reference_losses(data, n_windows: int = 128, block_size: int = 128, split: str = "val") -> dict:
    """The reference lines for a level's loss plots: uniform, unigram, bigram and the floor.

    Fitted on the level's training stories, scored on the same fixed windows of `split` as
    every point of the training curves (`train()` uses eval_windows with the same numbers).
    """
    from .data import eval_windows

    windows = eval_windows(getattr(data, split), n_windows, block_size)
    refs = count_model_losses(data.train, windows, len(data.vocab))
    floor = data.floor.get(split)
    return {**refs, **({"floor": floor} if floor is not None else {})}


def where_the_loss_goes(model, data, n_windows: int = 128, block_size: int = 128, costly: float = 10.0) -> dict:
    """Split the validation loss into the two ways a memorising model is wrong on new stories.

    - tokens its training stories never had (a name, an object): it cannot know them, yet it
      bets everything on the words its own stories had in that slot, so each costs many nats;
    - tokens it has seen: here it errs by following a memorised story where the new one goes
      another way.
    Returns shares and mean losses over the same fixed validation windows as the curves.
    """
    import collections

    import torch

    from .data import eval_windows
    from .surprise import window_token_losses

    windows = eval_windows(data.val, n_windows, block_size)
    losses, targets = window_token_losses(model, windows).flatten(), windows[1].flatten()
    seen = (torch.bincount(data.train.long(), minlength=len(data.vocab)) > 0)[targets]
    expensive = losses > costly
    total = losses.sum().item()
    never_seen = collections.Counter(data.vocab.decode([t]).strip() for t in targets[~seen].tolist())
    return {
        "tokens": targets.numel(), "mean_loss": round(losses.mean().item(), 3),
        "unseen_token_share": round((~seen).float().mean().item(), 4),
        "unseen_token_loss": round(losses[~seen].mean().item(), 2) if (~seen).any() else None,
        "unseen_loss_share": round(losses[~seen].sum().item() / total, 3),
        "seen_token_loss": round(losses[seen].mean().item(), 3),
        "costly": costly, "costly_share": round(expensive.float().mean().item(), 4),
        "costly_loss_share": round(losses[expensive].sum().item() / total, 3),
        "costly_unseen_share": round((expensive & ~seen).sum().item() / max(1, expensive.sum().item()), 3),
        "unseen_examples": [w for w, _ in never_seen.most_common(8)],
    }


def loss_split_line(split: dict) -> str:
    """where_the_loss_goes in three sentences a student can check against the numbers."""
    examples = ", ".join(repr(w) for w in split["unseen_examples"][:6])
    return (f"validation loss {split['mean_loss']:.3f} over {split['tokens']:,} tokens:\n"
            f"  {split['unseen_token_share']:.1%} of the tokens never occur in the training stories "
            f"(e.g. {examples}); they cost {split['unseen_token_loss']} nats each on average and make up "
            f"{split['unseen_loss_share']:.0%} of the loss\n"
            f"  the other {1 - split['unseen_token_share']:.1%}, tokens it has seen, cost "
            f"{split['seen_token_loss']:.2f} nats each\n"
            f"  {split['costly_share']:.1%} of all tokens cost more than {split['costly']:g} nats "
            f"({split['costly_loss_share']:.0%} of the loss); {split['costly_unseen_share']:.0%} of those are "
            f"tokens it never saw")
