"""The training loop: plain PyTorch, fast on a laptop CPU, and safe to interrupt.

Press stop (Ctrl-C, or the kernel's interrupt button) at any time, or send SIGTERM (`kill`,
`timeout`, a batch scheduler): training stops at the end of the current step, saves a resumable
checkpoint, and returns the history so far. An earlier interrupted run's state is never overwritten.
`train(config, resume=path)` continues exactly where it stopped, bit for bit.

Early stopping is built in: the weights with the lowest validation loss are kept beside the
final ones (`load_model(..., weights="best")`), and the history records where that was.
A run with other settings than its level's is saved under models/experiments/, never over
the level's own model (unless asked: overwrite=True, which keeps the old one aside).
"""
from __future__ import annotations

import math
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch

from .allocator import keep_freed_blocks
from .checkpoint import (CheckpointError, build_checkpoint, keep_earlier_resume, keep_previous,
                         level_owning, model_from_checkpoint, model_path, previous_path_for, read_checkpoint,
                         resume_path_for, save_checkpoint, save_model)
from .config import LevelConfig, get_level
from .data import LevelData, eval_windows, load_data
from .device import pick_device
from .distributed import Ranks
from .errors import CourseError, UsageError
from .history import History
from .model import TinyGPT
from .step import make_optimizer, train_step


class TrainingDivergedError(CourseError, RuntimeError):
    """The loss became NaN or infinite. `.history` holds everything up to that step."""

    def __init__(self, message: str, history: "History"):
        super().__init__(message)
        self.history = history


class ProtectedModelError(CheckpointError):
    """A run with other settings would replace a level's own model (which later lessons use)."""


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


PRECISIONS = ("fp32", "bf16")  # bf16: autocast to bfloat16, faster where the chip supports it

# What stops a run at the next step boundary: Ctrl-C (the kernel's stop button) and SIGTERM
# (what `kill`, `timeout` and batch schedulers send first). SIGKILL cannot be caught.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stop_at_step_boundary():
    """Turn Ctrl-C and SIGTERM into a flag checked between steps, so a stop never lands mid-update."""
    flag = {"stop": False, "signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"]:  # a second stop: the user really wants out
            raise KeyboardInterrupt
        flag["stop"], flag["signal"] = True, signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from .progress import progress_bar

    # mininterval/delay: fast bars can race JupyterLab's widget manager.
    return progress_bar(total=total, initial=initial, desc=desc, unit="step", mininterval=0.5,
                delay=0.1, dynamic_ncols=True, leave=True)


def train(config: LevelConfig | str | int, data: LevelData | None = None, device: str = "auto",
          callbacks: Sequence[Callable[[History], None]] = (), resume: str | Path | None = None,
          out: str | Path | None = None, save: bool = True, progress: bool = True,
          precision: str = "fp32", overwrite: bool = False) -> History:
    """Train one level and return its History (with `.model` and `.data` attached).

    callbacks are called with the history after every evaluation (the lessons' live plot).
    out: the checkpoint file (or a folder for it). By default a level's own settings save to
    models/model_<level>_<stories>_stories.pt and any other settings to models/experiments/.
    overwrite=True allows replacing a level's model with other settings (the old one is kept
    as .previous.pt). precision: "fp32", or "bf16" autocast (faster on CPUs with bf16 support).
    Under torchrun every process calls this; see slmlib/distributed.py for what changes then.
    """
    keep_freed_blocks()  # a third faster per step on Linux (slmlib/allocator.py says why)
    run = _Run(get_level(config), data, device, resume, out, save, precision, overwrite, progress)
    callbacks = callbacks if run.ranks.is_main else ()
    it = run.start
    with _stop_at_step_boundary() as stop:
        try:
            for it in range(run.start, run.config.max_iters + 1):
                # The state at the top of step `it` is what a resume needs to redo it exactly.
                run.rng_states = run.batch_rng.get_state(), torch.get_rng_state()
                if run.ranks.any(stop["stop"]):  # under torchrun: every rank stops at the same step
                    raise KeyboardInterrupt
                if run.evaluation_due(it):
                    run.evaluate_and_record(it, callbacks)
                if it == run.config.max_iters:
                    break
                run.step(it)
        except KeyboardInterrupt:
            run.save_for_resume(it, by=stop["signal"])
            return run.history
        finally:
            run.close_bar()
        # Still inside the Ctrl-C guard: a stop pressed while saving cannot lose the run.
        run.finish()
    run.ranks.wait_for_main()
    return run.history


class _Run:
    """One call of train(): the model and optimiser, the data, the random state a resume needs, the clock.

    The methods are the loop's parts, in the order they happen: evaluate and record, step, then
    either finish (save the model) or, when stopped, save what a resume needs.
    """

    def __init__(self, config: LevelConfig, data: LevelData | None, device: str, resume, out, save: bool,
                 precision: str, overwrite: bool, progress: bool):
        """Check the settings and the output, build the model, optimiser and batches, restore a resumed run."""
        self.config, self.ranks = config, Ranks.from_env()  # rank 0 of 1, unless torchrun started this process
        if precision not in PRECISIONS:
            raise UsageError(f"precision={precision!r} is not allowed: use {' or '.join(map(repr, PRECISIONS))} "
                             "('bf16' is faster on CPUs and GPUs with bfloat16 support)")
        self.out = output_path(config, out, overwrite)
        self.save, self.overwrite, self.resumed_from = save, overwrite, resume
        if save and self.ranks.is_main:
            check_writable(self.out)  # before the first step, not after minutes of training
        torch.manual_seed(config.seed)
        self.data = data if data is not None else load_data(config)
        self.model = TinyGPT.from_config(config, len(self.data.vocab))
        self.dev = self.ranks.join(pick_device(device, self.model.num_params()))  # "auto": a GPU for 10M+ parameters
        self.model.to(self.dev)
        self.trained = self.ranks.wrap(self.model)  # DistributedDataParallel under torchrun, else the model itself
        self.optimizer = make_optimizer(self.model, config)
        self.batch_rng = torch.Generator().manual_seed(config.seed + self.ranks.rank)  # each rank its own batches
        self.start, self.history, self.best_state = 0, History(config=config.to_dict()), None
        if resume is not None:
            self.start, self.history, self.best_state = _restore(resume, config, self.model, self.optimizer,
                                                                 self.batch_rng, self.ranks)
        self.history.parallel = self.ranks.describe(config)  # world_size and the global batch, saved with it
        self.windows = {split: eval_windows(getattr(self.data, split), config.eval_windows, config.block_size)
                        for split in ("train", "val")}
        self.autocast = (torch.autocast(self.dev.type, dtype=torch.bfloat16) if precision == "bf16"
                         else nullcontext())
        self.history.status, self.history.model, self.history.data = "running", self.model, self.data
        self.seconds_before, self.tokens = self.history.seconds, self.start * config.tokens_per_batch
        self.t0 = time.perf_counter()
        self.last_t, self.last_tokens = self.t0, self.tokens
        self.rng_states = None
        self.bar = _progress_bar(config.max_iters, self.start, config.name, progress and self.ranks.is_main)
        self.model.train()

    def elapsed(self) -> float:
        """Seconds of training so far, the run this one resumed included."""
        return self.seconds_before + time.perf_counter() - self.t0

    def evaluation_due(self, it: int) -> bool:
        """Every eval_interval steps and after the last, unless a resumed run recorded this step already."""
        due = it % self.config.eval_interval == 0 or it == self.config.max_iters
        return due and not (self.history.records and self.history.records[-1]["iter"] == it)

    def evaluate_and_record(self, it: int, callbacks: Sequence[Callable[[History], None]]) -> None:
        """Both losses on the fixed windows, recorded; the best weights so far kept; the callbacks told."""
        now = time.perf_counter()
        rec = {"iter": it,
               "train_loss": round(evaluate_loss(self.model, self.windows["train"], device=self.dev), 4),
               "val_loss": round(evaluate_loss(self.model, self.windows["val"], device=self.dev), 4),
               "tokens": self.tokens, "seconds": round(self.seconds_before + now - self.t0, 3),
               "tokens_per_sec": round((self.tokens - self.last_tokens) / max(now - self.last_t, 1e-9))}
        self.last_t, self.last_tokens = time.perf_counter(), self.tokens
        if self.history.record(rec):
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.bar is not None:
            self.bar.set_postfix(train=f"{rec['train_loss']:.3f}", val=f"{rec['val_loss']:.3f}")
        for callback in callbacks:
            callback(self.history)

    def step(self, it: int) -> None:
        """One optimisation step; a loss that is not finite stops the run, naming the fix."""
        config = self.config
        loss = train_step(self.model, self.optimizer, self.data, config, lr_at(it, config), self.batch_rng,
                          self.autocast, self.dev, self.ranks, self.trained)
        if not torch.isfinite(loss):
            self.history.status, self.history.seconds = "diverged", self.elapsed()
            raise TrainingDivergedError(
                f"training diverged: the loss became {loss.item()} at step {it} (lr={config.lr:g}). "
                f"Lower the learning rate, e.g. config.replace(lr={config.lr / 3:.1g}), and train again.",
                self.history)
        self.tokens += config.tokens_per_batch
        if self.bar is not None:
            self.bar.update(1)

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def finish(self) -> None:
        """Completed: the final losses and their gap, and the model saved (final and best weights)."""
        self.history.seconds = self.elapsed()
        last = self.history.records[-1]
        self.history.final = {"train_loss": last["train_loss"], "val_loss": last["val_loss"],
                              "gap": round(last["val_loss"] - last["train_loss"], 4),
                              "windows": self.config.eval_windows,
                              "tokens_per_split": self.config.eval_windows * self.config.block_size}
        self.history.status, self.history.resume_path = "completed", None
        if self.save and self.ranks.is_main:
            self.history.path = _save_final(self.model, self.out, self.config, self.data, self.history,
                                            self.best_state, self.overwrite)
            resume_path_for(self.out).unlink(missing_ok=True)  # finished: the resume file is stale now

    def save_for_resume(self, it: int, by: str | None) -> None:
        """Stopped at step `it`: save what a resume needs (on the main process), every rank waits for it."""
        self.history.status, self.history.seconds = "interrupted", self.elapsed()
        self.close_bar()  # before the message below
        rng_state, torch_rng_state = self.rng_states
        every_rank = self.ranks.resume_state(rng_state, torch_rng_state)  # {} without torchrun
        if self.ranks.is_main:
            _save_resume(self.history, self.out, self.model, self.optimizer, self.config, self.data, it, rng_state,
                         torch_rng_state, self.best_state, every_rank, resumed_from=self.resumed_from, by=by)
        self.ranks.wait_for_main()  # under torchrun: every rank returns once the file is there


def output_path(config: LevelConfig, out: str | Path | None, overwrite: bool = False) -> Path:
    """Where this run is saved; refuses to replace a level's own model with other settings."""
    if out is None:
        return model_path(config)
    out = Path(out)
    if out.is_dir():
        out = model_path(config, out)
    owner = level_owning(out)
    if owner is not None and (owner.name != config.name or config.changed_settings()) and not overwrite:
        changed = ", ".join(f"{k}={v}" for k, v in config.changed_settings().items()) or f"level {config.name}"
        raise ProtectedModelError(
            f"{out} is the {owner.name} level's own model, which later lessons use, and this run has "
            f"other settings ({changed}). Leave out `out` to save it as an experiment "
            f"({model_path(config, out.parent).relative_to(out.parent)}), or pass overwrite=True "
            f"(--force) to replace it on purpose (the old file is then kept as {previous_path_for(out).name}).")
    return out


def check_writable(path: Path) -> None:
    """A clear error now, before training, for a place we could not save to afterwards."""
    if path.is_dir():
        raise CheckpointError(f"cannot save the model to {path}: it is a folder; give a file name ending in .pt")
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(f"cannot save the model to {path}: a file is in the way of the folder "
                              f"{folder}; choose another output folder.") from None
    except OSError as e:
        raise CheckpointError(f"cannot save the model to {path}: the folder {folder} is not writable "
                              f"({e.strerror}); choose a folder you can write to.") from None


def _save_final(model, out: Path, config, data, history: History, best_state, overwrite: bool) -> Path:
    """Save the model (final and best weights); if the save fails, keep the weights elsewhere."""
    extra = {"best_state_dict": best_state} if best_state is not None else {}
    owner = level_owning(out)
    previous = keep_previous(out) if overwrite and owner is not None and config.changed_settings() else None
    try:
        path = save_model(model, out, config, data.vocab, history.to_dict(), data.stats(), **extra)
    except OSError as e:
        rescue = Path(tempfile.gettempdir()) / f"slm-rescued-{out.name}"
        save_checkpoint(build_checkpoint(model, config, data.vocab, history.to_dict(), data.stats(), **extra),
                        rescue)
        raise CheckpointError(f"could not save {out} ({e.strerror or e}); nothing is lost: the trained "
                              f"model is in {rescue}. Free some space or fix the folder, then move it "
                              "into place.") from None
    if previous is not None:
        print(f"Replaced {owner.name}'s model {out} (as asked: overwrite=True); "
              f"the one it replaced is kept as {previous}.")
    return path


def _save_resume(history: History, out: Path, model, optimizer, config, data, it, rng_state,
                 torch_rng_state, best_state, every_rank: dict, resumed_from=None, by: str | None = None) -> None:
    """Save the interrupted run's state; an earlier run's state (not the one resumed) is kept aside."""
    path = resume_path_for(out)
    earlier = None
    if path.is_file() and (resumed_from is None or Path(resumed_from).resolve() != path.resolve()):
        earlier = keep_earlier_resume(path)
    history.resume_path = str(path)
    extra = ({"best_state_dict": best_state} if best_state is not None else {}) | every_rank
    save_checkpoint(build_checkpoint(
        model, config, data.vocab, history.to_dict(), data.stats(), kind="resume", iter=it,
        optimizer_state_dict=optimizer.state_dict(), batch_rng_state=rng_state,
        torch_rng_state=torch_rng_state, **extra), path)
    how = f" by {by}" if by and by != "SIGINT" else ""
    print(f"\nTraining interrupted{how} at step {it}/{config.max_iters}. Nothing is lost: saved {path}.\n"
          f"Continue with train(config, resume='{path}').")
    if earlier is not None:
        print(f"An earlier interrupted run of the same settings was saved there; it is kept as {earlier} "
              f"(resume it with train(config, resume='{earlier}'), or delete it).")


def _restore(resume, config: LevelConfig, model, optimizer, batch_rng,
             ranks: Ranks) -> tuple[int, History, dict | None]:
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
    batch_rng_state, torch_rng_state = ranks.own_rng_states(ckpt, resume)  # under torchrun: this rank's
    batch_rng.set_state(batch_rng_state)
    torch.set_rng_state(torch_rng_state)
    return int(ckpt["iter"]), History.from_dict(ckpt["history"]), ckpt.get("best_state_dict")
