"""The training loop: plain PyTorch, fast on a laptop CPU, and safe to interrupt.

Press stop (Ctrl-C, or the kernel's interrupt button) at any time: training stops at the
end of the current step, saves a resumable checkpoint, and returns the history so far.
`train(config, resume=path)` continues exactly where it stopped.
"""
from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import (CheckpointError, _atomic_torch_save, build_checkpoint, default_path,
                         model_from_checkpoint, read_checkpoint, resume_path_for, save_model)
from .config import LevelConfig, get_level
from .data import LevelData, eval_windows, get_batch, load_data
from .device import pick_device
from .model import TinyGPT


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite. `.history` holds everything up to that step."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


@dataclass
class History:
    """What happened during training: one record per evaluation, plus the final numbers."""

    config: dict = field(default_factory=dict)
    records: list[dict] = field(default_factory=list)  # iter, train_loss, val_loss, tokens, seconds, tokens_per_sec
    final: dict = field(default_factory=dict)  # precise train/val/gap on more text, at the end
    status: str = "new"  # running | completed | interrupted | diverged
    seconds: float = 0.0
    resume_path: str | None = None
    # Not saved with the history: the objects a notebook wants next.
    model: TinyGPT | None = field(default=None, repr=False, compare=False)
    data: LevelData | None = field(default=None, repr=False, compare=False)
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

    def to_dict(self) -> dict:
        return {"config": self.config, "records": self.records, "final": self.final,
                "status": self.status, "seconds": self.seconds, "resume_path": self.resume_path}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**{k: d[k] for k in ("config", "records", "final", "status", "seconds", "resume_path") if k in d})


def lr_at(it: int, config: LevelConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr (or constant, as the seed did)."""
    if it < config.warmup_iters:
        return config.lr * (it + 1) / config.warmup_iters
    if config.lr_schedule == "constant":
        return config.lr
    progress = (it - config.warmup_iters) / max(1, config.max_iters - config.warmup_iters)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


@torch.no_grad()
def evaluate_loss(model: TinyGPT, windows: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64,
                  device: torch.device | str = "cpu") -> float:
    """Mean cross-entropy (nats per token) over fixed windows, in eval mode (no dropout)."""
    was_training = model.training
    model.eval()
    xs, ys = windows
    total = 0.0
    for i in range(0, xs.size(0), batch_size):
        x, y = xs[i: i + batch_size].to(device), ys[i: i + batch_size].to(device)
        _, loss = model(x, y)
        total += loss.item() * x.size(0)
    model.train(was_training)
    return total / xs.size(0)


@contextmanager
def _stop_at_step_boundary():
    """Turn Ctrl-C into a flag checked between steps, so a stop never lands mid-update."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"]:  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    # mininterval/delay: fast bars can race JupyterLab's widget manager.
    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=0.5,
                delay=0.1, dynamic_ncols=True, leave=True)


def train(config: LevelConfig | str | int, data: LevelData | None = None, device: str = "auto",
          callbacks: Sequence[Callable[["History"], None]] = (), resume: str | Path | None = None,
          out: str | Path | None = None, save: bool = True, progress: bool = True,
          precision: str = "fp32") -> History:
    """Train one level and return its History (with `.model` and `.data` attached).

    callbacks are called with the history after every evaluation (the lessons' live plot).
    The final model is saved to `out` (default models/model_<level>_<stories>_stories.pt).
    precision: "fp32", or "bf16" autocast (faster on CPUs with bf16 support).
    """
    config = get_level(config)
    dev = pick_device(device)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    out = Path(out) if out is not None else default_path(config)
    torch.manual_seed(config.seed)
    data = data if data is not None else load_data(config)
    model = TinyGPT.from_config(config, len(data.vocab)).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                                  weight_decay=config.weight_decay)
    batch_rng = torch.Generator().manual_seed(config.seed)
    history = History(config=config.to_dict())
    start = 0
    if resume is not None:
        start, history = _restore(resume, config, model, optimizer, batch_rng)

    n_eval = config.eval_iters * config.batch_size
    train_eval = eval_windows(data.train, n_eval, config.block_size)
    val_eval = eval_windows(data.val, n_eval, config.block_size)
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext())
    history.status, history.model, history.data = "running", model, data
    seconds_before = history.seconds
    tokens = start * config.tokens_per_batch
    t0 = time.perf_counter()
    last_t, last_tokens = t0, tokens
    bar = _progress_bar(config.max_iters, start, f"{config.name}", progress)
    it = start
    model.train()
    try:
        with _stop_at_step_boundary() as stop:
            for it in range(start, config.max_iters + 1):
                if stop["stop"]:
                    raise KeyboardInterrupt
                rng_state = batch_rng.get_state()  # saved if we stop here, for an exact resume
                torch_rng_state = torch.get_rng_state()
                last = it == config.max_iters
                if (it % config.eval_interval == 0 or last) and not _recorded(history, it):
                    now = time.perf_counter()
                    rec = {"iter": it,
                           "train_loss": evaluate_loss(model, train_eval, device=dev),
                           "val_loss": evaluate_loss(model, val_eval, device=dev),
                           "tokens": tokens, "seconds": round(seconds_before + now - t0, 3),
                           "tokens_per_sec": round((tokens - last_tokens) / max(now - last_t, 1e-9))}
                    last_t, last_tokens = time.perf_counter(), tokens
                    history.records.append(rec)
                    if bar is not None:
                        bar.set_postfix(train=f"{rec['train_loss']:.3f}", val=f"{rec['val_loss']:.3f}")
                    for callback in callbacks:
                        callback(history)
                if last:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(it, config)
                x, y = get_batch(data.train, config.batch_size, config.block_size, batch_rng)
                with autocast:
                    _, loss = model(x.to(dev), y.to(dev))
                if not torch.isfinite(loss):
                    history.status = "diverged"
                    history.seconds = seconds_before + time.perf_counter() - t0
                    raise TrainingDivergedError(
                        f"training diverged: the loss became {loss.item()} at step {it} (lr={config.lr:g}). "
                        f"Lower the learning rate, e.g. config.replace(lr={config.lr / 3:.1g}), and train again.",
                        history)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                tokens += config.tokens_per_batch
                if bar is not None:
                    bar.update(1)
    except KeyboardInterrupt:
        history.status = "interrupted"
        history.seconds = seconds_before + time.perf_counter() - t0
        path = resume_path_for(out)
        history.resume_path = str(path)
        _atomic_torch_save(build_checkpoint(
            model, config, data.vocab, history.to_dict(), data.stats(), kind="resume", iter=it,
            optimizer_state_dict=optimizer.state_dict(), batch_rng_state=rng_state,
            torch_rng_state=torch_rng_state), path)
        print(f"\nTraining interrupted at step {it}/{config.max_iters}. Nothing is lost: saved {path}.\n"
              f"Continue with train(config, resume='{path}') or "
              f"`python -m slmlib train --level {config.name} --resume`.")
        return history
    finally:
        if bar is not None:
            bar.close()

    history.seconds = seconds_before + time.perf_counter() - t0
    final_windows = config.final_eval_windows
    final_train = evaluate_loss(model, eval_windows(data.train, final_windows, config.block_size), device=dev)
    final_val = evaluate_loss(model, eval_windows(data.val, final_windows, config.block_size), device=dev)
    history.final = {"train_loss": round(final_train, 4), "val_loss": round(final_val, 4),
                     "gap": round(final_val - final_train, 4), "windows": final_windows}
    history.status = "completed"
    history.resume_path = None
    if save:
        history.path = save_model(model.cpu(), out, config, data.vocab, history.to_dict(), data.stats())
        model.to(dev)
        resume_path_for(out).unlink(missing_ok=True)  # finished: the resume file is stale now
    return history


def _recorded(history: History, it: int) -> bool:
    return bool(history.records) and history.records[-1]["iter"] == it


def _restore(resume, config: LevelConfig, model, optimizer, batch_rng) -> tuple[int, History]:
    ckpt = read_checkpoint(resume, "Nothing to resume: start the run without resume=.")
    if ckpt.get("kind") != "resume":
        raise CheckpointError(f"{resume} is a finished model, not an interrupted run; nothing to resume.")
    saved = LevelConfig.from_dict(ckpt["config"])
    if saved != config:
        raise CheckpointError(f"{resume} was saved for different settings ({saved.name}, "
                              f"max_iters={saved.max_iters}); resume with the same config.")
    restored, _, _ = model_from_checkpoint(ckpt, resume)
    model.load_state_dict(restored.state_dict())
    optimizer.load_state_dict(ckpt["optimizer_state_dict"])
    batch_rng.set_state(ckpt["batch_rng_state"])
    torch.set_rng_state(ckpt["torch_rng_state"])
    return int(ckpt["iter"]), History.from_dict(ckpt["history"])
