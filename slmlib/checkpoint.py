"""Saving and loading models, safely.

A checkpoint is a dict of plain Python types and tensors, so it loads with
`torch.load(path, weights_only=True)` (no pickled code runs). Writes go to a temp file
that is renamed into place: an interrupted save never destroys the previous file.
`models/model_index.json` lists every saved model.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from . import __version__
from .config import LevelConfig, get_level
from .model import TinyGPT
from .paths import MODELS_DIR, atomic_write
from .tokenizer import Vocab

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"
EXPERIMENTS_DIR = "experiments"  # under models/: every run that is not a level's own


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def default_path(config: LevelConfig, models_dir: Path | str = MODELS_DIR) -> Path:
    return Path(models_dir) / f"model_{config.name}_{config.stories}_stories.pt"


def resume_path_for(path: Path | str) -> Path:
    """Where an interrupted run keeps its resumable state, beside the final model."""
    path = Path(path)
    return path.with_name(path.stem + ".resume.pt")


def _atomic_torch_save(obj: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def build_checkpoint(model: TinyGPT, config: LevelConfig, vocab: Vocab, history: dict | None,
                     data_stats: dict | None, kind: str = "model", **extra) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config.to_dict(),
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "vocab": vocab.to_dict(),
        "history": history or {},
        "data_stats": data_stats or {},
        "versions": {"slmlib": __version__, "torch": str(torch.__version__)},
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }


def save_model(model: TinyGPT, path: Path | str | None, config: LevelConfig, vocab: Vocab,
               history: dict | None = None, data_stats: dict | None = None,
               update_index: bool = True) -> Path:
    """Save a trained model (atomically) and record it in the model index beside it."""
    path = Path(path) if path is not None else default_path(config)
    _atomic_torch_save(build_checkpoint(model, config, vocab, history, data_stats), path)
    if update_index:
        _update_index(path, config, model, history or {}, data_stats or {})
    return path


def read_checkpoint(path: Path | str, train_hint: str | None = None) -> dict:
    """The raw checkpoint dict, with a clear error for every way a file can be wrong."""
    path = Path(path)
    if not path.is_file():
        hint = train_hint or "Train it first with `python -m slmlib train --level <name>`."
        raise CheckpointError(f"no model file at {path}. {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, random bytes, pickled code objects, ...
        lines = [ln for ln in str(e).splitlines() if ln.strip()] or [""]
        reason = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0]).strip()
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {reason[:160]}). "
            "It may be truncated or from another program; delete it and train again."
        ) from None
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not an SLM Course checkpoint (no config/model_state_dict). "
                              "Train a model with `python -m slmlib train`.")
    version = ckpt.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}, newer than this slmlib "
                              f"understands ({FORMAT_VERSION}). Update the course (`git pull`) and try again.")
    return ckpt


def model_from_checkpoint(ckpt: dict, path: Path | str = "<checkpoint>") -> tuple[TinyGPT, LevelConfig, Vocab]:
    config = LevelConfig.from_dict(ckpt["config"])
    vocab = Vocab.from_dict(ckpt["vocab"])
    model = TinyGPT.from_config(config, len(vocab))
    try:
        model.load_state_dict(ckpt["model_state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)[:160]
        raise CheckpointError(f"{path}: the weights do not match the model its config describes "
                              f"({first}). The file is damaged or was edited; train it again.") from None
    model.eval()
    return model, config, vocab


def load_model(path: Path | str | None = None, level: str | int | None = None,
               device: str = "cpu", train_hint: str | None = None) -> tuple[TinyGPT, dict]:
    """Load a saved model -> (model, info). Give a path, or a level for its default path."""
    if path is None:
        if level is None:
            raise ValueError("give a checkpoint path or a level")
        cfg = get_level(level)
        path = default_path(cfg)
        train_hint = train_hint or (f"Train it first: `python -m slmlib train --level {cfg.name}` "
                                    "(or run its lesson notebook).")
    ckpt = read_checkpoint(path, train_hint)
    model, config, vocab = model_from_checkpoint(ckpt, path)
    from .train import History  # train imports this module; import here to avoid a cycle

    info = {"path": Path(path), "config": config, "vocab": vocab,
            "history": History.from_dict(ckpt.get("history") or {}),
            "data_stats": ckpt.get("data_stats", {}), "versions": ckpt.get("versions", {}),
            "kind": ckpt.get("kind", "model")}
    return model.to(device), info


# ---------------------------------------------------------------- the model index
# The checkpoint files are the truth; model_index.json is a cache of what they hold. Every read
# reconciles the two (one stat per file; a file is opened only when it is new or has changed since
# it was indexed), and every read-modify-write holds a lock, so two kernels saving at once keep
# both entries. Unreadable checkpoints are listed apart, never with their old losses.

INDEX_LOCK_TIMEOUT = 120  # seconds; a save holds the lock for milliseconds
NOT_MODELS = (".resume.pt", ".previous.pt")  # resumable state and kept-aside copies, not models


def index_root(path: Path | str) -> Path:
    """The models folder whose index lists this checkpoint (an experiment's is one level up)."""
    parent = Path(path).parent
    return parent.parent if parent.name == EXPERIMENTS_DIR else parent


@contextmanager
def _index_locked(models_dir: Path):
    """Hold the folder's index lock; yields False (no lock, do not write) in a read-only folder."""
    lock = FileLock(models_dir / f".{INDEX_FILE}.lock", timeout=INDEX_LOCK_TIMEOUT, is_singleton=True,
                    poll_interval=0.005)
    try:
        lock.acquire()
        locked = True
    except Timeout:  # (a kind of OSError: caught first)
        raise CheckpointError(f"{models_dir / INDEX_FILE} has been locked by another process for "
                              f"{INDEX_LOCK_TIMEOUT} s; let it finish, or stop it, and try again.") from None
    except OSError:  # a folder we may read but not write: reconcile in memory only
        locked = False
    try:
        yield locked
    finally:
        if locked:
            lock.release()


def _model_files(models_dir: Path) -> dict[str, Path]:
    """Index name (relative to models_dir) -> path, for every model file in the folder and its experiments."""
    candidates = [*models_dir.glob("*.pt"), *(models_dir / EXPERIMENTS_DIR).glob("*.pt")]
    return {p.relative_to(models_dir).as_posix(): p for p in sorted(candidates)
            if not p.name.startswith(".") and not p.name.endswith(NOT_MODELS) and p.is_file()}


def _file_stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _stored_index(models_dir: Path) -> dict:
    """What model_index.json says, reduced to well-formed entries ({} parts when missing or malformed)."""
    try:
        raw = json.loads((models_dir / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, unreadable, not JSON, not UTF-8
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    return {part: {k: v for k, v in raw[part].items() if isinstance(v, dict)}
            if isinstance(raw.get(part), dict) else {} for part in ("models", "unreadable")}


def _entry_from_file(name: str, path: Path) -> tuple[dict | None, str]:
    """(index entry, "") for a usable checkpoint, (None, why not) for any other file."""
    try:
        ckpt = read_checkpoint(path)
        model, config, _ = model_from_checkpoint(ckpt, path)
        entry = _index_entry(path, config, model.num_params(), ckpt.get("history") or {},
                             ckpt.get("data_stats") or {})
    except Exception as e:  # whatever is wrong with a file, the index lists it as unusable and goes on
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    entry.update(file=name, saved_at=ckpt.get("saved_at", entry["saved_at"]))
    return entry, ""


def _reconciled(models_dir: Path, stored: dict, skip: str = "") -> dict:
    """The index for the files now in the folder: stored entries whose file is unchanged, fresh ones for the rest."""
    index = {"models": {}, "unreadable": {}}
    for name, path in _model_files(models_dir).items():
        if name == skip:
            continue
        stat = _file_stat(path)
        for part in ("models", "unreadable"):
            old = stored[part].get(name)
            if old is not None and old.get("file_stat") == stat:
                index[part][name] = old
                break
        else:
            entry, why = _entry_from_file(name, path)
            if entry is not None:
                index["models"][name] = {**entry, "file_stat": stat}
            else:
                index["unreadable"][name] = {"file": name, "reason": why, "file_stat": stat}
    return index


def read_index(models_dir: Path | str = MODELS_DIR) -> dict:
    """{"models": {name: entry}, "unreadable": {name: {reason}}} for the checkpoints now in the folder.

    Names are relative to models_dir (experiments: "experiments/model_....pt"). A missing, stale or
    damaged model_index.json is repaired from the files; a read-only folder is reconciled in memory.
    """
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return {"models": {}, "unreadable": {}}
    with _index_locked(models_dir) as writable:
        stored = _stored_index(models_dir)
        index = _reconciled(models_dir, stored)
        if writable and index != stored:
            _write_index(index, models_dir)
    return index


def _write_index(index: dict, models_dir: Path) -> None:
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    atomic_write(Path(models_dir) / INDEX_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _index_entry(path: Path, config: LevelConfig, num_params: int, history: dict, data_stats: dict) -> dict:
    final = history.get("final") or {}
    return {"file": path.name, "level": config.name, "stories": config.stories,
            "train_tokens": data_stats.get("train_tokens"), "params": num_params,
            "train_loss": final.get("train_loss"), "val_loss": final.get("val_loss"),
            "gap": final.get("gap"), "seconds": history.get("seconds"),
            "status": history.get("status"), "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _update_index(path: Path, config: LevelConfig, model: TinyGPT, history: dict, data_stats: dict) -> None:
    """Record a just-saved checkpoint, keeping every other model the folder holds."""
    path = Path(path)
    models_dir = index_root(path)
    name = path.name if path.parent == models_dir else f"{EXPERIMENTS_DIR}/{path.name}"
    with _index_locked(models_dir):
        index = _reconciled(models_dir, _stored_index(models_dir), skip=name)
        entry = _index_entry(path, config, model.num_params(), history, data_stats)
        index["models"][name] = {**entry, "file": name, "file_stat": _file_stat(path)}
        _write_index(index, models_dir)


def rebuild_index(models_dir: Path | str = MODELS_DIR) -> dict:
    """Recreate model_index.json from the checkpoints alone, opening every one of them."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return {"models": {}, "unreadable": {}}
    with _index_locked(models_dir) as writable:
        index = _reconciled(models_dir, {"models": {}, "unreadable": {}})
        if writable:
            _write_index(index, models_dir)
    return index
