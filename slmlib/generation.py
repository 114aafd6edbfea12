"""Text in, text out: prompts become compact token ids, samples become text again."""
from __future__ import annotations

import torch

from .model import TinyGPT
from .tokenizer import Vocab


class EmptyPromptError(ValueError):
    """The prompt has no text in it."""


def encode_prompt(prompt: str, vocab: Vocab, device: torch.device | str = "cpu") -> torch.Tensor:
    if not isinstance(prompt, str) or not prompt.strip():
        raise EmptyPromptError("the prompt is empty: type a few words to start the story, "
                               "e.g. 'Once upon a time'")
    return torch.tensor([vocab.encode(prompt)], dtype=torch.long, device=device)


def generate_text(model: TinyGPT, vocab: Vocab, prompt: str, max_new_tokens: int = 100,
                  temperature: float = 0.8, top_k: int | None = 40, seed: int | None = 0,
                  stop_at_end: bool = True) -> str:
    """The prompt followed by the model's continuation (stopping at <|endoftext|>)."""
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be at least 1")
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
    device = next(model.parameters()).device
    probs = model.next_token_probs(encode_prompt(prompt, vocab, device), temperature)[0]
    top = torch.topk(probs, min(k, probs.numel()))
    return [(vocab.decode([i]), round(p, 4)) for p, i in zip(top.values.tolist(), top.indices.tolist())]
