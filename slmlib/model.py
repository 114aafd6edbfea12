"""TinyGPT: a GPT-2 style language model, small enough to train on a laptop CPU.

Same shape as GPT-2 (and nanoGPT's model.py): token + position embeddings, a stack of
pre-LayerNorm transformer blocks, causal self-attention, a GELU MLP, and an output layer
that shares its weights with the token embedding.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import UsageError, is_real_number


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be divisible by n_head ({n_head})")
        self.n_head = n_head
        self.qkv = nn.Linear(n_embd, 3 * n_embd)  # queries, keys, values in one matmul
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_size): each head attends on its own.
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        # is_causal: position t may only look at positions <= t (no peeking at the future).
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))  # residual connections keep gradients flowing
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int,
                 n_embd: int, dropout: float = 0.0):
        super().__init__()
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # GPT-2's trick: scale the residual projections down with depth.
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @classmethod
    def from_config(cls, config, vocab_size: int) -> "TinyGPT":
        return cls(vocab_size, config.block_size, config.n_layer, config.n_head,
                   config.n_embd, config.dropout)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters (the tied output layer counted once); optionally without embeddings."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel() + self.pos_emb.weight.numel()
        return n

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, vocab) and, given targets, the mean cross-entropy in nats."""
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.block_size}")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss

    @torch.no_grad()
    def next_token_probs(self, idx: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Probabilities of the next token after the (1, T) context `idx`."""
        logits, _ = self(idx[:, -self.block_size:])
        return F.softmax(logits[:, -1, :].float() / max(temperature, 1e-6), dim=-1)

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, stop_token: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend the (B, T) context by sampling up to `max_new_tokens` tokens.

        temperature < 1 sharpens the distribution, > 1 flattens it; 0 means greedy.
        top_k keeps only the k most likely tokens. A seed makes the result reproducible.
        Stops early when every row has produced `stop_token` (e.g. <|endoftext|>).
        """
        check_temperature(temperature)
        if generator is None and seed is not None:
            generator = torch.Generator(device=idx.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -self.block_size:])  # crop: positions only go to block_size
            next_id = pick_next_token(logits[:, -1, :].float(), temperature, top_k, generator)
            idx = torch.cat((idx, next_id), dim=1)
            if stop_token is not None:
                finished |= next_id.squeeze(1) == stop_token
                if finished.all():
                    break
        self.train(was_training)
        return idx


def check_temperature(temperature) -> None:
    """The one check of a sampling temperature, for generate() and the text helpers alike."""
    if not is_real_number(temperature) or temperature < 0:
        raise UsageError(f"temperature={temperature!r} is not allowed: use a finite number >= 0 "
                         "(0 always picks the likeliest token, 0.8 is the default, 2 is wild)")


def pick_next_token(logits: torch.Tensor, temperature: float, top_k: int | None,
                    generator: torch.Generator | None) -> torch.Tensor:
    """A (B, 1) next token from (B, vocab) logits: greedy at temperature 0, else sampled."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    scaled = logits / temperature
    if not torch.isfinite(scaled).all():  # a tiny temperature (1e-300) overflows float32: the same
        shifted = logits.double() - logits.double().amax(dim=-1, keepdim=True)  # distribution, computed safely
        scaled = (shifted / temperature).to(logits.dtype)
    logits = scaled
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
