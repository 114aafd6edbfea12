"""The five levels of the course: how much data, how big a model, how long to train.

The architectures (layers, heads, width) and story counts are the seed project's.
The training settings differ from the seed's (batch 4, lr 1e-3, 200-2000 steps): at
those settings the small models *underfit* and no train/val gap shows (see the README).
`seed_settings(level)` gives the seed's settings back so a lesson can show that.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class UnknownLevelError(ValueError):
    """A level name or number that is not one of the five."""


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
    weight_decay: float = 0.0
    warmup_iters: int = 30
    lr_schedule: str = "cosine"  # "cosine" decays to min_lr_ratio * lr; "constant" is the seed's
    min_lr_ratio: float = 0.1
    eval_interval: int = 100
    eval_iters: int = 8  # batches of batch_size windows per estimate during training (the curves)
    final_eval_windows: int = 512  # windows for the final, more precise train/val numbers
    seed: int = 1337
    full_vocab: bool = False  # True: 50,257-way output layer like real GPT-2 (slow; for comparison)
    corpus: str = "stories"  # "stories" (the course's generator) or a folder of TinyStoriesV2 files

    def replace(self, **changes) -> "LevelConfig":
        """A copy with some settings changed, e.g. `cfg.replace(max_iters=50)`."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise TypeError(f"unknown setting(s) {sorted(unknown)}; valid settings: {valid}")
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


# Tuned on this course's corpus so the lesson holds (README, "Why not the seed's settings").
LEVELS: dict[str, LevelConfig] = {
    c.name: c
    for c in (
        LevelConfig("ultra_tiny", 1, stories=100, n_layer=2, n_head=2, n_embd=32, max_iters=400,
                    batch_size=16, eval_interval=50, eval_iters=2),
        LevelConfig("tiny", 2, stories=200, n_layer=2, n_head=2, n_embd=64, max_iters=400,
                    batch_size=16, eval_interval=50, eval_iters=2),
        LevelConfig("small", 3, stories=1000, n_layer=3, n_head=3, n_embd=96, max_iters=800),
        # A gentler learning rate: at 3e-3 medium memorises enough in ~1.5 passes to keep a 0.06 gap.
        LevelConfig("medium", 4, stories=3000, n_layer=3, n_head=3, n_embd=96, max_iters=1200, lr=2e-3),
        LevelConfig("large", 5, stories=10000, n_layer=4, n_head=4, n_embd=128, max_iters=2000),
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
    valid = ", ".join(f"{c.number}={c.name}" for c in LEVELS.values())
    raise UnknownLevelError(f"unknown level {level!r}; valid levels: {valid}")


def seed_settings(level: str | int | LevelConfig) -> LevelConfig:
    """The level with the seed project's training settings (batch 4, lr 1e-3, constant)."""
    cfg = get_level(level)
    return cfg.replace(batch_size=4, lr=1e-3, lr_schedule="constant", warmup_iters=0,
                       max_iters=SEED_MAX_ITERS[cfg.name])
