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

from .checkpoint import (CheckpointError, build_checkpoint, keep_earlier_resume, keep_previous,
                         level_owning, model_from_checkpoint, model_path, previous_path_for, read_checkpoint,
                         resume_path_for, save_checkpoint, save_model)
from .config import LevelConfig, get_level
from .data import LevelData, eval_windows, load_data
from .device import pick_device
from .distributed import Ranks
from .errors import CourseError
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
    from tqdm.auto import tqdm

    # mininterval/delay: fast bars can race JupyterLab's widget manager.
    return tqdm(total=total, initial=initial, desc=desc, unit="step", mininterval=0.5,
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
    config = get_level(config)
    ranks = Ranks.from_env()  # rank 0 of 1, unless torchrun started this process
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")
    out = output_path(config, out, overwrite)
    if save and ranks.is_main:
        check_writable(out)  # before the first step, not after minutes of training
    torch.manual_seed(config.seed)
    data = data if data is not None else load_data(config)
    model = TinyGPT.from_config(config, len(data.vocab))
    dev = ranks.join(pick_device(device, model.num_params()))  # "auto": a GPU for 10M+ parameters
    model = model.to(dev)
    trained = ranks.wrap(model)  # DistributedDataParallel under torchrun, else the model itself
    optimizer = make_optimizer(model, config)
    batch_rng = torch.Generator().manual_seed(config.seed + ranks.rank)  # each rank its own batches
    history = History(config=config.to_dict())
    start, best_state = 0, None
    if resume is not None:
        start, history, best_state = _restore(resume, config, model, optimizer, batch_rng, ranks)
    history.parallel = ranks.describe(config)  # world_size and the global batch, saved with the history

    windows = {split: eval_windows(getattr(data, split), config.eval_windows, config.block_size)
               for split in ("train", "val")}
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext())
    history.status, history.model, history.data = "running", model, data
    seconds_before = history.seconds
    tokens = start * config.tokens_per_batch
    t0 = time.perf_counter()
    last_t, last_tokens = t0, tokens
    bar = _progress_bar(config.max_iters, start, f"{config.name}", progress and ranks.is_main)
    it = start
    model.train()
    with _stop_at_step_boundary() as stop:
        try:
            for it in range(start, config.max_iters + 1):
                # The state at the top of step `it` is what a resume needs to redo it exactly.
                rng_state, torch_rng_state = batch_rng.get_state(), torch.get_rng_state()
                if ranks.any(stop["stop"]):  # under torchrun: every rank stops at the same step
                    raise KeyboardInterrupt
                last = it == config.max_iters
                if (it % config.eval_interval == 0 or last) and not _recorded(history, it):
                    now = time.perf_counter()
                    rec = {"iter": it,
                           "train_loss": round(evaluate_loss(model, windows["train"], device=dev), 4),
                           "val_loss": round(evaluate_loss(model, windows["val"], device=dev), 4),
                           "tokens": tokens, "seconds": round(seconds_before + now - t0, 3),
                           "tokens_per_sec": round((tokens - last_tokens) / max(now - last_t, 1e-9))}
                    last_t, last_tokens = time.perf_counter(), tokens
                    if history.record(rec):
                        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                    if bar is not None:
                        bar.set_postfix(train=f"{rec['train_loss']:.3f}", val=f"{rec['val_loss']:.3f}")
                    for callback in callbacks if ranks.is_main else ():
                        callback(history)
                if last:
                    break
                loss = train_step(model, optimizer, data, config, lr_at(it, config), batch_rng, autocast, dev,
                                  ranks, trained)
                if not torch.isfinite(loss):
                    history.status = "diverged"
                    history.seconds = seconds_before + time.perf_counter() - t0
                    raise TrainingDivergedError(
                        f"training diverged: the loss became {loss.item()} at step {it} (lr={config.lr:g}). "
                        f"Lower the learning rate, e.g. config.replace(lr={config.lr / 3:.1g}), and train again.",
                        history)
                tokens += config.tokens_per_batch
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            history.status = "interrupted"
            history.seconds = seconds_before + time.perf_counter() - t0
            if bar is not None:
                bar.close()
            every_rank = ranks.resume_state(rng_state, torch_rng_state)  # {} without torchrun
            if ranks.is_main:
                _save_resume(history, out, model, optimizer, config, data, it, rng_state, torch_rng_state,
                             best_state, every_rank, resumed_from=resume, by=stop["signal"])
            ranks.wait_for_main()  # under torchrun: every rank returns once the file is there
            return history
        finally:
            if bar is not None:
                bar.close()

        # Still inside the Ctrl-C guard: a stop pressed while saving cannot lose the run.
        history.seconds = seconds_before + time.perf_counter() - t0
        last_rec = history.records[-1]
        history.final = {"train_loss": last_rec["train_loss"], "val_loss": last_rec["val_loss"],
                         "gap": round(last_rec["val_loss"] - last_rec["train_loss"], 4),
                         "windows": config.eval_windows, "tokens_per_split": config.eval_windows * config.block_size}
        history.status = "completed"
        history.resume_path = None
        if save and ranks.is_main:
            history.path = _save_final(model, out, config, data, history, best_state, overwrite)
            resume_path_for(out).unlink(missing_ok=True)  # finished: the resume file is stale now
    ranks.wait_for_main()
    return history


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


def _recorded(history: History, it: int) -> bool:
    return bool(history.records) and history.records[-1]["iter"] == it


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
