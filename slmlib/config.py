"""The five levels of the course: how much data, how big a model, how long to train.

The architectures (layers, heads, width) and story counts are the seed project's.
The training settings differ from the seed's (batch 4, lr 1e-3, 200-2000 steps): at
those settings the small models *underfit* and no train/val gap shows (see the README).
`seed_settings(level)` gives the seed's settings back so a lesson can show that.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass

from .errors import CourseError, is_real_number, is_whole_number


class UnknownLevelError(CourseError, ValueError):
    """A level name or number that is not one of the five."""


class ConfigError(CourseError, ValueError):
    """A setting with an impossible value (max_iters=0, lr=nan, ...); the message names it."""


class UnknownSettingError(CourseError, TypeError):
    """A setting LevelConfig does not have, e.g. a typo in `cfg.replace(max_iter=50)` (a TypeError, as Python's own)."""


# The largest values that still make sense here: 10 million steps is weeks on a CPU even for the
# smallest level (the course's longest run is 1,500), and torch.manual_seed takes at most 2**64 - 1
# (the seed plus a rank under torchrun must fit). Larger values ran forever or overflowed deep inside.
MAX_ITERS = 10_000_000
MAX_SEED = 2**63 - 1

# setting -> (smallest whole number allowed, largest (None: no limit), what it is): checked by
# LevelConfig itself, so notebooks, the command line and checkpoints all get the same checks.
_WHOLE_NUMBERS = {
    "number": (1, None, "the level's number"), "stories": (1, None, "training stories"),
    "n_layer": (1, 1000, "layers"), "n_head": (1, None, "attention heads"),
    "n_embd": (1, 100_000, "the model's width"), "max_iters": (1, MAX_ITERS, "training steps"),
    "batch_size": (1, 1_000_000, "windows per step"), "block_size": (1, 1_000_000, "tokens per window"),
    "micro_batch_size": (0, 1_000_000, "windows per forward pass (0: the whole batch at once)"),
    "warmup_iters": (0, MAX_ITERS, "warm-up steps"), "eval_interval": (1, MAX_ITERS, "steps between evaluations"),
    "eval_windows": (1, 1_000_000, "windows per evaluation"), "seed": (0, MAX_SEED, "the random seed"),
}


@dataclass(frozen=True)
class LevelConfig:
    name: str
    number: int
    stories: int  # training stories: level N trains on the first N stories of the train split
    n_layer: int
    n_head: int
    n_embd: int
    max_iters: int
    batch_size: int = 4
    lr: float = 3e-3
    block_size: int = 128
    dropout: float = 0.0
    weight_decay: float = 0.0  # AdamW's, on the 2-D weights only (train.make_optimizer says why)
    beta1: float = 0.9  # AdamW's running averages of the gradient ...
    beta2: float = 0.95  # ... and of its square (0.95, as nanoGPT: steadier than 0.999 on small batches)
    grad_clip: float = 1.0  # the gradient's norm is capped at this before each step (0: no cap)
    warmup_iters: int = 30
    lr_schedule: str = "cosine"  # "cosine" decays to min_lr_ratio * lr; "constant" is the seed's
    min_lr_ratio: float = 0.1
    eval_interval: int = 100
    # Windows of block_size tokens per split for every evaluation. The same fixed windows
    # give every point of the curves and the final numbers, so a gap has one value.
    eval_windows: int = 128
    seed: int = 1337
    full_vocab: bool = False  # True: 50,257-way output layer like real GPT-2 (slow; for comparison)
    corpus: str = "stories"  # "stories" (the course's generator) or a TinyStories folder (text, or prepared)
    # Windows per forward pass on each process; gradient accumulation makes up the rest of
    # batch_size, which stays the batch of one step whatever the number of processes (torchrun).
    micro_batch_size: int = 0  # 0: each process's share of the batch in one pass

    def __post_init__(self):
        """Refuse impossible settings here, where every caller passes, naming the setting and the fix."""
        def bad(name, rule):
            value = getattr(self, name)
            return ConfigError(f"level {self.name!r}: the setting {name}={value!r} is not allowed; "
                               f"{name} must be {rule}")
        if not isinstance(self.name, str) or not self.name:
            raise bad("name", "a level name such as 'tiny'")
        for name, (low, high, what) in _WHOLE_NUMBERS.items():
            if not hasattr(self, name):  # a setting another version of the course does not have
                continue
            value = getattr(self, name)
            if not is_whole_number(value) or value < low or (high is not None and value > high):
                allowed = f" from {low:,} to {high:,}" if high is not None else f" >= {low}"
                raise bad(name, f"a whole number{allowed} ({what})")
        if self.n_embd % self.n_head:
            raise ConfigError(f"level {self.name!r}: the setting n_embd={self.n_embd} is not allowed; the width "
                              f"n_embd must be divisible by n_head={self.n_head} (each head gets an equal "
                              f"share), e.g. n_embd={self.n_head * max(1, round(self.n_embd / self.n_head))}")
        if not is_real_number(self.lr) or self.lr <= 0:
            raise bad("lr", "a finite number > 0 (the learning rate, e.g. 3e-3)")
        if not is_real_number(self.dropout) or not 0 <= self.dropout < 1:
            raise bad("dropout", "a number from 0 (no dropout) up to, not including, 1")
        if not is_real_number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "a finite number >= 0 (0: none)")
        for beta in ("beta1", "beta2"):
            if not is_real_number(getattr(self, beta)) or not 0 <= getattr(self, beta) < 1:
                raise bad(beta, "a number from 0 up to, not including, 1 (e.g. 0.9)")
        if not is_real_number(self.grad_clip) or self.grad_clip < 0:
            raise bad("grad_clip", "a finite number >= 0 (0: no cap)")
        if not is_real_number(self.min_lr_ratio) or not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "a number from 0 to 1 (the final learning rate as a share of lr)")
        if self.lr_schedule not in ("cosine", "constant"):
            raise bad("lr_schedule", "'cosine' or 'constant'")
        if not isinstance(self.full_vocab, bool):
            raise bad("full_vocab", "True or False")
        if not isinstance(self.corpus, str) or not self.corpus:
            raise bad("corpus", "'stories' or a folder of TinyStoriesV2 files")

    def replace(self, **changes) -> "LevelConfig":
        """A copy with some settings changed, e.g. `cfg.replace(max_iters=50)`."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            said = [name + "".join(f" (did you mean {m}?)" for m in difflib.get_close_matches(name, names, n=1))
                    for name in unknown]
            raise UnknownSettingError(f"unknown setting(s) {', '.join(said)}; valid settings: {', '.join(names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LevelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.block_size

    def changed_settings(self) -> dict:
        """The settings that differ from this level's defaults ({} for a level's own run)."""
        default = LEVELS.get(self.name, PRESETS.get(self.name))
        if default is None or default.number != self.number:
            return {"name": self.name}
        return {k: v for k, v in self.to_dict().items() if getattr(default, k) != v}


# Tuned on this course's corpus so the lesson holds (README, "The five levels"), each measured:
# - Levels 1-2 train long enough to memorise their stories word for word (the recital) while the
#   validation loss turns up: ultra_tiny at 1,200 steps ends at train 0.30 and recites 15.5 of 20
#   words (1,600: 0.20, 19 of 20; batch 8 x 2,000 steps: 0.56, 5.5); tiny at 800 steps recites
#   3.5 of 20 words, at 1,200 steps 13.9 (lr 1e-2: 16.0, but best val 2.95 instead of 2.85).
# - Levels 3-5 get what the ladder's time budget allows and are still improving at their last step;
#   lessons 05-07 say so, with what twice the steps gives (README, "The five levels").
# Every run is evaluated at least 15 times, so the curves have no false knees.
LEVELS: dict[str, LevelConfig] = {
    c.name: c
    for c in (
        LevelConfig("ultra_tiny", 1, stories=100, n_layer=2, n_head=2, n_embd=32, max_iters=1400,
                    batch_size=16, lr=1e-2, eval_interval=50),
        LevelConfig("tiny", 2, stories=200, n_layer=2, n_head=2, n_embd=64, max_iters=1200,
                    batch_size=16, lr=6e-3, eval_interval=50),
        LevelConfig("small", 3, stories=1000, n_layer=3, n_head=3, n_embd=96, max_iters=400,
                    batch_size=16, lr=6e-3, eval_interval=25),
        LevelConfig("medium", 4, stories=3000, n_layer=3, n_head=3, n_embd=96, max_iters=500,
                    batch_size=16, lr=6e-3, eval_interval=25),
        LevelConfig("large", 5, stories=10000, n_layer=4, n_head=4, n_embd=128, max_iters=1500,
                    batch_size=8, lr=5e-3, eval_interval=100),
    )
}

# Beyond one laptop (README, "Beyond one laptop"): real TinyStories on a GPU, at the scale of the
# TinyStories paper's smaller models. Not a level: no lesson uses it. It needs the prepared corpus
# (`python -m slmlib data prepare-tinystories`); its 10.6M non-embedding parameters put it over
# device.GPU_MIN_PARAMS, so device="auto" trains it on a GPU when there is one.
PRESETS: dict[str, LevelConfig] = {
    c.name: c
    for c in (
        LevelConfig("tinystories_gpu", 6, stories=2_000_000, n_layer=6, n_head=6, n_embd=384,
                    max_iters=10_000, batch_size=128, block_size=256, lr=1e-3, warmup_iters=200,
                    eval_interval=500, eval_windows=256, corpus="data/tinystories/prepared"),
    )
}

# The seed project's config_cpu.py values.
SEED_MAX_ITERS = {"ultra_tiny": 200, "tiny": 500, "small": 800, "medium": 1500, "large": 2000}


def get_level(level: str | int | LevelConfig) -> LevelConfig:
    """A level by name ("tiny"), by number (1-5) or passed through if already a config."""
    if isinstance(level, LevelConfig):
        return level
    if isinstance(level, int) or (isinstance(level, str) and level.strip().isdigit()):
        for cfg in LEVELS.values():
            if cfg.number == int(level):
                return cfg
    elif isinstance(level, str):
        key = level.strip().lower().replace("-", "_").replace(" ", "_")
        if key in LEVELS:
            return LEVELS[key]
        if key in PRESETS:
            return PRESETS[key]
    valid = ", ".join(f"{c.number}={c.name}" for c in LEVELS.values())
    raise UnknownLevelError(f"unknown level {level!r}; valid levels: {valid} (presets beyond the course: "
                            f"{', '.join(PRESETS)})")


def seed_settings(level: str | int | LevelConfig) -> LevelConfig:
    """The level with the seed project's training settings (batch 4, lr 1e-3, constant)."""
    cfg = get_level(level)
    return cfg.replace(batch_size=4, lr=1e-3, lr_schedule="constant", warmup_iters=0,
                       max_iters=SEED_MAX_ITERS[cfg.name])
