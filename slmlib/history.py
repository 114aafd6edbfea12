"""What happened during a training run: the curves, the best point, the final numbers.

It lives below both the training loop (which writes it) and the checkpoint format (which
stores it), so neither has to import the other to read one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HISTORY_KEYS = ("config", "records", "final", "best", "status", "seconds", "resume_path", "parallel")


@dataclass
class History:
    """One record per evaluation, the best validation point, and the final numbers.

    Every record is measured on the same fixed windows (config.eval_windows of each split),
    so the last point of a curve *is* the final number a summary prints.
    """

    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)  # iter, train_loss, val_loss, tokens, seconds, tokens_per_sec
    final: dict = field(default_factory=dict)  # train/val/gap at the last step
    best: dict = field(default_factory=dict)  # iter, train_loss, val_loss of the lowest validation loss
    status: str = "new"  # running | completed | interrupted | diverged
    seconds: float = 0.0
    resume_path: str | None = None
    # How it was trained: world_size (processes, under torchrun), global_batch, micro_batch, ...
    parallel: dict = field(default_factory=dict)
    # Not saved with the history: the objects a notebook wants next.
    model: Any = field(default=None, repr=False, compare=False)
    data: Any = field(default=None, repr=False, compare=False)
    path: Path | None = field(default=None, repr=False, compare=False)

    def column(self, key: str) -> list:
        return [r[key] for r in self.records]

    @property
    def iters(self) -> list[int]:
        return self.column("iter")

    @property
    def train_loss(self) -> list[float]:
        return self.column("train_loss")

    @property
    def val_loss(self) -> list[float]:
        return self.column("val_loss")

    @property
    def gap(self) -> float | None:
        """Final val loss minus train loss: how much better the model does on text it saw."""
        if self.final:
            return self.final["gap"]
        return self.records[-1]["val_loss"] - self.records[-1]["train_loss"] if self.records else None

    def record(self, rec: dict) -> bool:
        """Add an evaluation; True when it is the lowest validation loss so far."""
        self.records.append(rec)
        if not self.best or rec["val_loss"] < self.best["val_loss"]:
            self.best = {k: rec[k] for k in ("iter", "train_loss", "val_loss")}
            return True
        return False

    @property
    def overfit_by(self) -> float | None:
        """How much the validation loss rose after its best point (0 when the best is the last)."""
        if not self.best or not self.records:
            return None
        return round(self.records[-1]["val_loss"] - self.best["val_loss"], 4)

    @property
    def fell_over_last_fifth(self) -> float | None:
        """How much the validation loss fell over the last fifth of the run (about 0: it flattened)."""
        if not self.records:
            return None
        last = self.records[-1]
        start = max((r for r in self.records if r["iter"] <= 0.8 * last["iter"]), key=lambda r: r["iter"])
        return round(start["val_loss"] - last["val_loss"], 4)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in HISTORY_KEYS}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        history = cls(**{k: d[k] for k in HISTORY_KEYS if k in d})
        if not history.best and history.records:  # saved before `best` existed: recompute it
            best = min(history.records, key=lambda r: r["val_loss"])
            history.best = {k: best[k] for k in ("iter", "train_loss", "val_loss")}
        return history
