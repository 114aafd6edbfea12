"""Saving and loading models, safely.

A checkpoint is a dict of plain Python types and tensors, so it loads with
`torch.load(path, weights_only=True)` (no pickled code runs). Writes go to a temp file
that is renamed into place: an interrupted save never destroys the previous file.
`models/model_index.json` lists every saved model.
"""
from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from . import __version__, paths
from .config import LEVELS, ConfigError, LevelConfig, get_level
from .errors import CourseError, UsageError, as_sentence, first_sentences, is_whole_number
from .history import History
from .model import TinyGPT
from .paths import atomic_write
from .tokenizer import Vocab

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"
EXPERIMENTS_DIR = "experiments"  # under models/: every run that is not a level's own
WEIGHTS = ("final", "best")  # the last step's weights, or those with the lowest validation loss


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint that cannot be used; the message says why and what to do."""


def default_path(config: LevelConfig, models_dir: Path | str | None = None) -> Path:
    """The level's own model file: the one lessons 08-09, `test` and `generate` use (default: in models/)."""
    return paths.models_dir(models_dir) / f"model_{config.name}_{config.stories}_stories.pt"


def model_path(config: LevelConfig, models_dir: Path | str | None = None) -> Path:
    """Where a run is saved: the level's own file for its default settings, else an experiment.

    An experiment's name says what changed, e.g.
    models/experiments/model_tiny_200_stories__lr=0.01_max_iters=30.pt,
    so trying something never replaces the model a later lesson relies on.
    """
    changed = config.changed_settings()
    if not changed:
        return default_path(config, models_dir)
    slug = "_".join(f"{k}={v}" for k, v in sorted(changed.items()))
    slug = re.sub(r"[^A-Za-z0-9_.=-]+", "-", slug)[:120]
    return paths.models_dir(models_dir) / EXPERIMENTS_DIR / f"model_{config.name}_{config.stories}_stories__{slug}.pt"


def level_owning(path: Path | str) -> LevelConfig | None:
    """The level whose own model file this path is (whatever folder it is in), if any."""
    name = Path(path).name
    return next((c for c in LEVELS.values() if default_path(c).name == name), None)


def previous_path_for(path: Path | str) -> Path:
    """Where a level's model goes when it is replaced on purpose, so it is never lost."""
    path = Path(path)
    return path.with_name(path.stem + ".previous.pt")


def keep_previous(path: Path | str) -> Path | None:
    """Copy an existing model aside before it is replaced; None if none.

    The copy goes to name.previous.pt, or, if that is taken (a second forced run), to the first free
    name.N.previous.pt: the level's real model, kept aside by the first replacement, is never lost.
    """
    path = Path(path)
    if not path.is_file():
        return None
    previous = previous_path_for(path)
    if previous.exists():
        previous = _first_free(lambda n: path.with_name(f"{path.stem}.{n}.previous.pt"))
    atomic_write(previous, lambda tmp: shutil.copy2(path, tmp))
    return previous


def resume_path_for(path: Path | str) -> Path:
    """Where an interrupted run keeps its resumable state, beside the final model."""
    path = Path(path)
    return path.with_name(path.stem + ".resume.pt")


def keep_earlier_resume(resume: Path | str) -> Path:
    """Move an earlier run's resume file aside (name.earlier-N.resume.pt) before a new one is saved."""
    resume = Path(resume)
    base = resume.name.removesuffix(".resume.pt")
    earlier = _first_free(lambda n: resume.with_name(f"{base}.earlier-{n}.resume.pt"))
    resume.replace(earlier)
    return earlier


def _first_free(name_for) -> Path:
    n = 1
    while name_for(n).exists():
        n += 1
    return name_for(n)


def save_checkpoint(obj: dict, path: Path) -> None:
    """torch.save through a temp file: the old file survives a failed or interrupted write."""
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
               update_index: bool = True, **extra) -> Path:
    """Save a trained model (atomically) and record it in the model index beside it.

    extra: more entries for the checkpoint, e.g. best_state_dict (the early-stopped weights).
    """
    path = Path(path) if path is not None else model_path(config)
    save_checkpoint(build_checkpoint(model, config, vocab, history, data_stats, **extra), path)
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
    except OSError as e:  # the file is there but cannot be read: its data may be fine
        fix = (f"Make it readable (e.g. `chmod u+r {path}`) and try again" if isinstance(e, PermissionError)
               else "Check the file and the disk it is on")
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror or e}. {fix}.") from None
    except Exception as e:  # truncated zip, random bytes, pickled code objects, ...
        lines = [ln for ln in str(e).splitlines() if ln.strip()] or [""]
        reason = next((ln for ln in lines if "WeightsUnpickler error" in ln), lines[0]).strip()
        reason = as_sentence(first_sentences(reason.split("WeightsUnpickler error: ")[-1]))  # never cut mid-sentence
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({type(e).__name__}: {reason}) "
            "It may be truncated or from another program; delete it and train again."
        ) from None
    if not isinstance(ckpt, dict) or "model_state_dict" not in ckpt or "config" not in ckpt:
        raise CheckpointError(f"{path} is not an SLM Course checkpoint (no config/model_state_dict). "
                              "Train a model with `python -m slmlib train`.")
    problem = _checkpoint_problem(ckpt)
    if problem:
        raise unusable(path, problem)
    version = ckpt.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {version}, newer than this slmlib "
                              f"understands ({FORMAT_VERSION}). Update the course (`git pull`) and try again.")
    return ckpt


def unusable(path: Path | str, problem: str) -> CheckpointError:
    return CheckpointError(f"{path} is not a usable checkpoint: {problem}. It was damaged or edited by hand; "
                           "train the model again (`python -m slmlib train --level <name>`).")


def _checkpoint_problem(ckpt: dict) -> str | None:
    """What is wrong with a loaded checkpoint dict's shape (None if nothing)."""
    version = ckpt.get("format_version", 0)
    if not is_whole_number(version) or version < 0:
        return f"its format_version is {version!r}, not a whole number"
    for key in ("config", "model_state_dict", "vocab"):
        if key not in ckpt:
            return f"it has no {key}"
        if not isinstance(ckpt[key], dict):
            return f"its {key} is a {type(ckpt[key]).__name__}, not a dict"
    for key in ("history", "data_stats"):
        if ckpt.get(key) is not None and not isinstance(ckpt[key], dict):
            return f"its {key} is a {type(ckpt[key]).__name__}, not a dict"
    return None


def _check_weights(weights) -> None:
    if weights not in WEIGHTS:
        raise UsageError(f"weights={weights!r} is not allowed: use 'final' (the last step's weights) or 'best' "
                         "(those with the lowest validation loss)")


def model_from_checkpoint(ckpt: dict, path: Path | str = "<checkpoint>",
                          weights: str = "final") -> tuple[TinyGPT, LevelConfig, Vocab]:
    """The model a checkpoint holds; weights="best" gives the lowest-validation-loss weights."""
    _check_weights(weights)
    key = "best_state_dict" if weights == "best" else "model_state_dict"
    if key not in ckpt:
        raise CheckpointError(f"{path} holds no best-validation weights (it was saved before early "
                              "stopping existed, or by an interrupted run); use weights='final' or train again.")
    problem = _checkpoint_problem(ckpt)
    if problem:
        raise unusable(path, problem)
    try:
        config = LevelConfig.from_dict(ckpt["config"])
    except (ConfigError, TypeError) as e:  # impossible or missing settings
        raise unusable(path, f"its config is wrong ({first_sentences(e)})") from None
    try:
        vocab = Vocab.from_dict(ckpt["vocab"])
    except (KeyError, TypeError, ValueError) as e:
        raise unusable(path, f"its vocabulary map is wrong ({type(e).__name__}: {first_sentences(e)})") from None
    state = ckpt[key]
    if not isinstance(state, dict):
        raise unusable(path, f"its {key} is a {type(state).__name__}, not a dict")
    mismatch = _shape_mismatch(config, len(vocab), state)
    if mismatch:  # checked on an empty (meta) model: a config that claims 64 x 2048 allocates nothing
        raise CheckpointError(f"{path}: the weights do not match the model its config describes "
                              f"({mismatch}). The file is damaged or was edited; train it again.")
    not_finite = [name for name, t in state.items() if torch.is_tensor(t) and t.is_floating_point()
                  and not torch.isfinite(t).all()]
    if not_finite:
        raise CheckpointError(f"{path} holds weights that are NaN or infinite ({', '.join(not_finite[:3])}"
                              f"{' ...' if len(not_finite) > 3 else ''}): a model like that cannot generate "
                              "or be tested. The file is damaged or came from a diverged run; train it again.")
    model = TinyGPT.from_config(config, len(vocab))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        first = as_sentence(first_sentences(lines[1] if len(lines) > 1 else lines[0] if lines else ""))
        raise CheckpointError(f"{path}: the weights do not match the model its config describes "
                              f"({first}) The file is damaged or was edited; train it again.") from None
    model.eval()
    return model, config, vocab


def _shape_mismatch(config: LevelConfig, vocab_size: int, state: dict) -> str | None:
    """How the saved weights differ from the model the config describes (None if they match)."""
    with torch.device("meta"):  # shapes only: no memory is allocated, whatever the config says
        expected = {k: tuple(v.shape) for k, v in TinyGPT.from_config(config, vocab_size).state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if missing:
        return f"missing weights {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        return f"unexpected weights {', '.join(map(str, unexpected[:3]))}{' ...' if len(unexpected) > 3 else ''}"
    for name, shape in expected.items():
        saved = state[name]
        if not torch.is_tensor(saved):
            return f"{name} is a {type(saved).__name__}, not a tensor"
        if tuple(saved.shape) != shape:
            return f"{name} is {tuple(saved.shape)} in the file, {shape} for the config"
    return None


def load_model(path: Path | str | None = None, level: str | int | None = None,
               device: str = "cpu", train_hint: str | None = None,
               weights: str = "final") -> tuple[TinyGPT, dict]:
    """Load a saved model -> (model, info). Give a path, or a level for the level's own model.

    weights="best" loads the early-stopped weights (lowest validation loss) instead of the last.
    """
    _check_weights(weights)  # before reading a file that may be large
    if path is None:
        if level is None:
            raise UsageError("give a checkpoint path or a level, e.g. load_model(level='tiny')")
        cfg = get_level(level)
        path = default_path(cfg)
        train_hint = train_hint or (f"Train it first: `python -m slmlib train --level {cfg.name}` "
                                    "(or run its lesson notebook).")
    ckpt = read_checkpoint(path, train_hint)
    model, config, vocab = model_from_checkpoint(ckpt, path, weights)
    info = {"path": Path(path), "config": config, "vocab": vocab, "weights": weights,
            "history": History.from_dict(ckpt.get("history") or {}),
            "data_stats": ckpt.get("data_stats", {}), "versions": ckpt.get("versions", {}),
            "kind": ckpt.get("kind", "model")}
    owner = level_owning(path)
    if owner is not None and owner.name == config.name and config.changed_settings():
        changed = ", ".join(f"{k}={v}" for k, v in config.changed_settings().items())
        warnings.warn(f"{path} is {owner.name}'s model but was trained with other settings than the "
                      f"level's ({changed}); retrain it with `python -m slmlib train --level {owner.name}`.",
                      stacklevel=2)
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
        return None, f"{type(e).__name__}: {first_sentences(e, 300)}"  # whole sentences, never cut mid-way
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


def read_index(models_dir: Path | str | None = None) -> dict:
    """{"models": {name: entry}, "unreadable": {name: {reason}}} for the checkpoints now in the folder.

    Names are relative to models_dir (experiments: "experiments/model_....pt"). A missing, stale or
    damaged model_index.json is repaired from the files; a read-only folder is reconciled in memory.
    """
    models_dir = paths.models_dir(models_dir)
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
            "best_val": (history.get("best") or {}).get("val_loss"),
            "best_step": (history.get("best") or {}).get("iter"),
            # what differs from the level's own settings ({} for the level's own model)
            "settings": {k: v for k, v in config.changed_settings().items() if k != "name"},
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
