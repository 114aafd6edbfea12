"""Text in, text out: prompts become compact token ids, samples become text again."""
from __future__ import annotations

import torch

from .config import MAX_SEED
from .errors import CourseError, UsageError, is_whole_number
from .model import TinyGPT, check_temperature
from .tokenizer import Vocab

# A story is about 170 tokens; the large model writes about 50 tokens a second on one busy CPU core
# (measured: 19 ms per token), so the cap is under half a minute at worst.
MAX_NEW_TOKENS = 1000


class EmptyPromptError(CourseError, ValueError):
    """The prompt has no text in it."""


def check_generation_settings(max_new_tokens, temperature, top_k=None, seed=None) -> None:
    """The sampling settings a user types, checked before any work, with the fix."""
    if not is_whole_number(max_new_tokens) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UsageError(f"max_new_tokens={max_new_tokens!r} is not allowed: ask for 1 to {MAX_NEW_TOKENS:,} "
                         "new tokens at a time (a story is about 170; generation stops at its end anyway)")
    check_temperature(temperature)
    if top_k is not None and (not is_whole_number(top_k) or top_k < 0):
        raise UsageError(f"top_k={top_k!r} is not allowed: use a whole number >= 0 (0 or None: all tokens)")
    if seed is not None and (not is_whole_number(seed) or not 0 <= seed <= MAX_SEED):
        raise UsageError(f"seed={seed!r} is not allowed: use a whole number from 0 to {MAX_SEED:,}, "
                         "or None for a new sample each time")


def encode_prompt(prompt: str, vocab: Vocab, device: torch.device | str = "cpu") -> torch.Tensor:
    if not isinstance(prompt, str) or not prompt.strip():
        raise EmptyPromptError("the prompt is empty: type a few words to start the story, "
                               "e.g. 'Once upon a time'")
    return torch.tensor([vocab.encode(prompt)], dtype=torch.long, device=device)


def generate_text(model: TinyGPT, vocab: Vocab, prompt: str, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 40, seed: int | None = 0,
                  stop_at_end: bool = True) -> str:
    """The prompt followed by the model's continuation (stopping at <|endoftext|>)."""
    check_generation_settings(max_new_tokens, temperature, top_k, seed)
    device = next(model.parameters()).device
    idx = encode_prompt(prompt, vocab, device)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed,
                         stop_token=vocab.eot_id if stop_at_end else None)
    new = out[0, idx.size(1):].tolist()
    if stop_at_end and vocab.eot_id in new:
        new = new[: new.index(vocab.eot_id)]
    return prompt + vocab.decode(new)


def next_token_table(model: TinyGPT, vocab: Vocab, prompt: str, k: int = 10,
                     temperature: float = 1.0) -> list[tuple[str, float]]:
    """The k most likely next tokens after the prompt, with their probabilities."""
    check_temperature(temperature)
    if not is_whole_number(k) or not 1 <= k <= len(vocab):
        raise UsageError(f"k={k!r} is not allowed: show from 1 to {len(vocab):,} (the vocabulary's size) "
                         "of the likeliest next tokens, e.g. k=10")
    device = next(model.parameters()).device
    probs = model.next_token_probs(encode_prompt(prompt, vocab, device), temperature)[0]
    top = torch.topk(probs, min(k, probs.numel()))
    return [(vocab.decode([i]), round(p, 4)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
