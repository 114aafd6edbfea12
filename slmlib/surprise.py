"""Token surprise: where in a text a model is sure, where it is lost, and what it expected instead.

A model's loss is a mean over tokens of -ln p(token | the tokens before it), in nats. This
module keeps the per-token numbers: `score_text` gives each token its loss, whether the
model's compact vocabulary knows it (an unknown token reaches the model as `<unk>`), and
the model's top guesses at that position. `TextSurprise.to_html()` colours each token by
its loss, static HTML that survives in executed notebooks (hover: `title`; click:
`<details>`, no JavaScript, so JupyterLab's sanitiser keeps it; one style sheet per view).

It also scores the hand-written stories of data/handwritten_stories.txt, children's stories
a person wrote, not the course's generator: text from beyond the world the models know.
"""
from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import paths
from .checkpoint import default_path, load_model, model_path, read_index
from .config import get_level
from .data import eval_windows, gpt2_stream, handwritten_path, read_stories
from .errors import UsageError
from .model import TinyGPT
from .tokenizer import EOT_ID, EOT_TEXT, Vocab, encode_gpt2, gpt2

TOP_K = 5
SCALE_MAX = 8.0  # nats: the colour scale's top (a uniform guess over ~3,000 tokens is ln 3000 = 8.0)
HANDWRITTEN_HINT = "It ships with the course: restore it with `git checkout -- data/handwritten_stories.txt`."


class EmptyTextError(UsageError):
    """A text with nothing to score in it."""


@dataclass(frozen=True)
class TokenSurprise:
    """One token of a scored text."""

    text: str  # the token's own piece of text (GPT-2's), even when the model only saw <unk>
    loss: float  # -ln p(this token | everything before it), in nats
    unknown: bool  # not in the model's vocabulary: it reached the model as <unk>
    rank: int  # where the token stood among the model's guesses (1 = its first choice)
    guesses: tuple[tuple[str, float], ...]  # the model's top guesses here: (token text, probability)

    @property
    def probability(self) -> float:
        return math.exp(-self.loss)


@dataclass
class TextSurprise:
    """A text, token by token, under one model. Shows itself as coloured HTML in a notebook."""

    tokens: list[TokenSurprise]
    label: str = ""
    vocab_size: int | None = None  # the model's vocabulary: a perplexity above it is worse than a uniform guess

    @property
    def mean_loss(self) -> float:
        """Nats per token: the model's loss on this text."""
        return sum(t.loss for t in self.tokens) / len(self.tokens)

    @property
    def unknown_count(self) -> int:
        return sum(t.unknown for t in self.tokens)

    @property
    def unknown_share(self) -> float:
        return self.unknown_count / len(self.tokens)

    def most_surprising(self, n: int = 10) -> list[tuple[int, TokenSurprise]]:
        """(position, token) of the n tokens with the highest loss, highest first."""
        ranked = sorted(enumerate(self.tokens), key=lambda it: -it[1].loss)
        return ranked[:n]

    def perplexity_words(self) -> str:
        """e^(mean loss): as unsure as a uniform pick among that many tokens. Above the vocabulary's
        size the count means nothing (4,904,946,879.5 of 2,139 tokens), so say what it does mean."""
        perplexity = math.exp(min(self.mean_loss, 700.0))
        if self.vocab_size and perplexity > self.vocab_size:
            return (f"perplexity above the vocabulary's {self.vocab_size:,} tokens: worse than a uniform guess, "
                    f"which scores ln {self.vocab_size:,} = {math.log(self.vocab_size):.2f}")
        return f"perplexity {perplexity:,.1f}"

    def summary(self) -> str:
        name = f"{self.label}: " if self.label else ""
        return (f"{name}mean {self.mean_loss:.3f} nats/token over {len(self.tokens)} tokens "
                f"({self.perplexity_words()}); {self.unknown_count} unknown to the vocabulary")

    def to_html(self, scale_max: float = SCALE_MAX) -> str:
        return surprise_html(self, scale_max)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:  # the plain-text stand-in beside the HTML: one line, not every token
        return f"TextSurprise({self.summary()})"


# ---------------------------------------------------------------- scoring

@torch.no_grad()
def window_token_losses(model: TinyGPT, windows: tuple[torch.Tensor, torch.Tensor],
                        batch_size: int = 64) -> torch.Tensor:
    """Per-token losses (n_windows, block) over fixed windows; their mean is evaluate_loss's number."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, ys = windows
    out = []
    for i in range(0, xs.size(0), batch_size):
        logits, _ = model(xs[i: i + batch_size].to(device))
        out.append(F.cross_entropy(logits.float().transpose(1, 2), ys[i: i + batch_size].to(device),
                                   reduction="none").cpu())
    model.train(was_training)
    return torch.cat(out)


def _sliding_windows(n: int, block: int) -> list[tuple[int, int, int]]:
    """(start, first scored, end) windows over n targets: each target is scored once, and after
    the first window with at least block/2 tokens of context (not from scratch at each block)."""
    end = min(n, block)
    windows = [(0, 0, end)]
    stride = max(1, block // 2)
    while end < n:
        new_end = min(n, end + stride)
        windows.append((new_end - block, end, new_end))
        end = new_end
    return windows


@torch.no_grad()
def score_ids(model: TinyGPT, vocab: Vocab, ids: Sequence[int], top_k: int = TOP_K,
              context_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token (losses, ranks, top-k probabilities, top-k ids) for compact ids `ids`.

    Token 0 is predicted after `context_id` (default <|endoftext|>, as at the start of every
    training story). Texts longer than the model's block are scored with sliding windows.
    """
    if not len(ids):
        raise EmptyTextError("there is no text to score: type a few words")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    context = vocab.eot_id if context_id is None else context_id
    stream = torch.tensor([context, *ids], dtype=torch.long)
    x_all, y_all = stream[:-1], stream[1:]
    n, k = len(ids), min(top_k, len(vocab))
    losses, ranks = torch.empty(n), torch.empty(n, dtype=torch.long)
    top_p, top_i = torch.empty(n, k), torch.empty(n, k, dtype=torch.long)
    for start, first, end in _sliding_windows(n, model.block_size):
        logits, _ = model(x_all[start:end][None].to(device))
        logp = F.log_softmax(logits[0, first - start:].float(), dim=-1).cpu()
        target = y_all[first:end]
        chosen = logp.gather(1, target[:, None])
        losses[first:end] = -chosen[:, 0]
        ranks[first:end] = (logp > chosen).sum(dim=1) + 1
        values, indices = logp.topk(k, dim=-1)
        top_p[first:end], top_i[first:end] = values.exp(), indices
    model.train(was_training)
    return losses, ranks, top_p, top_i


def score_text(model: TinyGPT, vocab: Vocab, text: str, top_k: int = TOP_K, label: str = "") -> TextSurprise:
    """Each token of `text` with its loss under the model, unknown flag and the model's top guesses."""
    if not isinstance(text, str) or not text.strip():
        raise EmptyTextError("the text is empty: type a few words (or a whole story) to score")
    gpt2_ids = encode_gpt2(text)
    ids = vocab.from_gpt2(gpt2_ids, warn=False)
    losses, ranks, top_p, top_i = score_ids(model, vocab, ids, top_k)
    enc = gpt2()
    tokens = []
    for pos, (g, c) in enumerate(zip(gpt2_ids, ids)):
        guesses = tuple((vocab.decode([int(i)]), float(p)) for p, i in zip(top_p[pos], top_i[pos]))
        tokens.append(TokenSurprise(text=enc.decode([g]), loss=float(losses[pos]),
                                    unknown=vocab.unk_id is not None and c == vocab.unk_id,
                                    rank=int(ranks[pos]), guesses=guesses))
    return TextSurprise(tokens, label, len(vocab))


def text_to_score(path: Path | str) -> str:
    """A file's text as the models read text: a TinyStories-format file becomes
    story<|endoftext|>story..., as in training; any other file is scored as it is (ends trimmed)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"no file at {path}: give the path of a UTF-8 text file") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder: give the path of a UTF-8 text file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}): save it as UTF-8") from None
    except OSError as e:
        raise UsageError(f"cannot read {path} ({e.strerror}): check the path and its permissions") from None
    if any(line.strip() == EOT_TEXT for line in raw.splitlines()):
        return EOT_TEXT.join(read_stories(path))
    return raw.strip()


# ---------------------------------------------------------------- the hand-written stories

def handwritten_stories(path: Path | str | None = None) -> list[str]:
    """The hand-written stories (data/handwritten_stories.txt): never trained on, never in the vocabulary."""
    return read_stories(path or handwritten_path(), hint=HANDWRITTEN_HINT)


def score_handwritten(model: TinyGPT, vocab: Vocab, path: Path | str | None = None) -> dict:
    """The model's loss on the hand-written stories, measured as test loss is, and their unknown share.

    loss: nats per token over fixed windows of the stories joined by <|endoftext|> (the same
    procedure as the test split's loss, so the two compare). known_loss: the same, counting
    only the tokens the vocabulary knows (unknown_loss: only the others). unknown_share: the stories' GPT-2 tokens (the
    separators not counted) that the compact vocabulary has no id for.
    """
    texts = handwritten_stories(path)
    stream = gpt2_stream(texts)
    compact = vocab.from_gpt2_tensor(stream)
    is_unknown = compact == vocab.unk_id if vocab.unk_id is not None else torch.zeros_like(compact, dtype=torch.bool)
    story_tokens = int((stream != EOT_ID).sum())
    windows = eval_windows(compact, compact.numel(), model.block_size)  # every token at least once
    losses = window_token_losses(model, windows)
    known = windows[1] != (vocab.unk_id if vocab.unk_id is not None else -1)
    return {"stories": len(texts), "tokens": story_tokens, "loss": float(losses.mean()),
            "known_loss": float(losses[known].mean()) if known.any() else float("nan"),
            "unknown_loss": float(losses[~known].mean()) if (~known).any() else float("nan"),
            "unknown_tokens": int(is_unknown.sum()), "unknown_share": int(is_unknown.sum()) / story_tokens}


# ---------------------------------------------------------------- finding a level's saved model

def find_level_model(level: str | int, models_dir: Path | str | None = None,
                     settings: dict | None = None) -> Path | None:
    """The checkpoint that stands for a level: the run with `settings` (a lesson's smoke run),
    else the level's own model, else its newest other run; None when nothing is saved."""
    cfg, models_dir = get_level(level), paths.models_dir(models_dir)
    candidates = ([model_path(cfg.replace(**settings), models_dir)] if settings else []) + [default_path(cfg, models_dir)]
    for path in candidates:
        if path.is_file():
            return path
    runs = [e for e in read_index(models_dir)["models"].values()
            if e.get("level") == cfg.name and e.get("stories") == cfg.stories and (models_dir / e["file"]).is_file()]
    return models_dir / max(runs, key=lambda e: e.get("saved_at") or "")["file"] if runs else None


def load_level_model(level: str | int, models_dir: Path | str | None = None, settings: dict | None = None):
    """(model, info) for find_level_model's checkpoint, or None when the level has no saved model."""
    path = find_level_model(level, models_dir, settings)
    return load_model(path) if path is not None else None


# ---------------------------------------------------------------- HTML

def loss_color(loss: float, scale_max: float = SCALE_MAX) -> str:
    """A background colour for a loss: pale yellow (sure) through orange to dark red (lost)."""
    import matplotlib

    r, g, b, _ = matplotlib.colormaps["YlOrRd"](min(max(loss, 0.0), scale_max) / scale_max)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _text_color(loss: float, scale_max: float) -> str:
    return "#ffffff" if loss > 0.6 * scale_max else "#111111"  # readable on the dark reds


def _shown(piece: str) -> str:
    """A token's text for display: line breaks drawn as ↵ (the break itself follows the token)."""
    return html.escape(piece.replace("\n", "↵"))


# One style sheet per view, for what every token shares. Each token keeps inline only what the
# view cannot be read without (its colour, and the tokens laid out in a line): JupyterLab strips
# <style> from outputs it does not trust (a notebook executed elsewhere, e.g. by `make course`),
# and those copies still show the coloured text. A story of 141 tokens is about 28 KB (with every
# style inline it was 107 KB).
_SHEET = ("<style>"
          ".slm-text{font-size:13px;line-height:1.9;max-width:900px}"
          ".slm-text>details{vertical-align:top;position:relative}"
          ".slm-text>details>summary{cursor:pointer;list-style:none}"
          ".slm-text>details>summary::-webkit-details-marker{display:none}"
          ".slm-text>details[open]>summary{box-shadow:0 0 0 2px #1a237e}"  # the clicked token
          # the guesses float over the text below the token (as a tooltip does), never push it down
          ".slm-text>details>span{position:absolute;left:0;top:100%;z-index:20;margin-top:3px;background:#fff;"
          "color:#111;border:1px solid #888;padding:2px 6px;white-space:pre;font-size:12px;line-height:1.4;"
          "box-shadow:0 2px 6px rgba(0,0,0,.25)}"
          ".slm-text>details>span::before{content:'the model expected:\\A'}"
          "</style>")
GUESSES_SHOWN = 3


def _token_html(token: TokenSurprise, scale_max: float) -> str:
    """One token: a <details> whose <summary> is the token coloured by its loss (hover: its
    numbers) and whose body is the model's top guesses there (click). No JavaScript, so the
    notebook's sanitiser keeps it; the markup repeats for every token, so it is kept short."""
    style = f"display:inline;background:{loss_color(token.loss, scale_max)}"
    if _text_color(token.loss, scale_max) != "#111111":
        style += ";color:#fff"  # readable on the dark reds
    if token.unknown:
        style += ";outline:2px dashed #6a1b9a"
    title = f"{token.loss:.2f} nats, guess #{token.rank}" + (", seen as <unk>" if token.unknown else "")
    guesses = "\n".join(f"{html.escape(repr(g), quote=False)} {p:.0%}" for g, p in token.guesses[:GUESSES_SHOWN])
    unknown = "\n(it saw only &lt;unk&gt; here: the word is not in its vocabulary)" if token.unknown else ""
    # inline-block: Chromium lays a display:inline <details> out as a block (one token per line).
    return (f"<details style=display:inline-block><summary style='{style}' "
            f"title='{html.escape(title, quote=True)}'>{_shown(token.text)}</summary>"
            f"<span>{guesses}{unknown}</span></details>"
            + "\n" * token.text.count("\n"))


def _legend_html(scale_max: float) -> str:
    steps = [scale_max * i / 8 for i in range(9)]
    swatches = "".join(
        f"<span style='display:inline-block;min-width:2.6em;text-align:center;background:{loss_color(v, scale_max)};"
        f"color:{_text_color(v, scale_max)}'>{v:g}{'+' if v == scale_max else ''}</span>" for v in steps)
    return (f"<div class='slm-legend' style='margin-top:6px;font-size:12px'>loss per token (nats): "
            f"<span style='color:#555'>sure</span> {swatches} <span style='color:#555'>lost</span>"
            f" &nbsp; <span style='outline:2px dashed #6a1b9a;padding:0 3px'>unknown</span> = not in the "
            f"vocabulary (seen as &lt;unk&gt;). Hover a token for its loss; click it for the model's top guesses there.</div>")


def surprise_html(surprise: TextSurprise, scale_max: float = SCALE_MAX) -> str:
    """The coloured text, its mean and a legend, as one self-contained HTML block."""
    tokens = "".join(_token_html(t, scale_max) for t in surprise.tokens)
    return (f"<div class='slm-surprise' style='margin:4px 0 14px 0'>{_SHEET}"
            f"<div class='slm-summary' style='font-weight:bold;margin-bottom:4px'>{html.escape(surprise.summary())}</div>"
            f"<div class='slm-text' style='font-family:monospace;white-space:pre-wrap'>{tokens}</div>"
            f"{_legend_html(scale_max)}</div>")


def surprising_table(surprise: TextSurprise, n: int = 10, context_tokens: int = 6) -> list[dict]:
    """Rows for the n most surprising tokens: position, token, loss, the text before it, top guesses."""
    rows = []
    for pos, token in surprise.most_surprising(n):
        before = "".join(t.text for t in surprise.tokens[max(0, pos - context_tokens): pos])
        rows.append({"position": pos, "token": repr(token.text), "loss": round(token.loss, 3),
                     "unknown": "yes" if token.unknown else "", "after": repr(before[-40:]),
                     "model_expected": ", ".join(f"{g!r} {p:.0%}" for g, p in token.guesses[:3])})
    return rows
