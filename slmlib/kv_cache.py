"""Generation with a key/value cache: the same tokens as TinyGPT.generate, sooner.

`TinyGPT.generate` (slmlib/model.py, the version the lessons read) runs the whole context
through the model for every new token. The keys and values of the earlier positions do not
change when a token is added, so they can be kept: each new token then costs one position's
work instead of the whole context's. `make bench` measures the difference (section "KV cache").

Once the context outgrows block_size, generate() crops it and every position shifts by one, so
no kept key is right any more; from there this does what generate() does, a full pass per token.
Same model, same settings, same seed: the same tokens (up to floating-point rounding, which the
benchmark checks on its runs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .model import TinyGPT, check_temperature, pick_next_token


def _attend(attn, x: torch.Tensor, cache: list, causal: bool) -> torch.Tensor:
    """CausalSelfAttention.forward for new positions, with the keys and values kept in `cache`."""
    B, T, C = x.shape
    q, k, v = attn.qkv(x).split(C, dim=2)
    q, k, v = (t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))
    if cache:  # the earlier positions' keys and values, then the new ones
        k, v = torch.cat((cache[0], k), dim=2), torch.cat((cache[1], v), dim=2)
    cache[:] = [k, v]
    # The prompt attends causally within itself; one new token may look at every kept position.
    y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    return attn.proj(y.transpose(1, 2).reshape(B, T, C))


def _last_logits(model: TinyGPT, new: torch.Tensor, start: int, caches: list[list]) -> torch.Tensor:
    """Logits after the last of the `new` tokens, which sit at positions start, start + 1, ..."""
    x = model.tok_emb(new) + model.pos_emb(torch.arange(start, start + new.size(1), device=new.device))
    for block, cache in zip(model.blocks, caches):
        x = x + _attend(block.attn, block.ln1(x), cache, causal=start == 0)
        x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x[:, -1, :]))


@torch.no_grad()
def generate_cached(model: TinyGPT, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, stop_token: int | None = None, seed: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """TinyGPT.generate with a key/value cache: the same arguments and the same tokens."""
    check_temperature(temperature)
    if generator is None and seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    caches: list[list] = [[] for _ in model.blocks]
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    for _ in range(max_new_tokens):
        if idx.size(1) <= model.block_size:
            new = idx[:, -1:] if caches[0] else idx  # the prompt once, then one token at a time
            logits = _last_logits(model, new, idx.size(1) - new.size(1), caches)
        else:  # cropped from here on, as in generate(): positions shift, so a full pass per token
            logits = model(idx[:, -model.block_size:])[0][:, -1, :]
        next_id = pick_next_token(logits.float(), temperature, top_k, generator)
        idx = torch.cat((idx, next_id), dim=1)
        if stop_token is not None:
            finished |= next_id.squeeze(1) == stop_token
            if finished.all():
                break
    model.train(was_training)
    return idx
