"""Saving and loading models, safely.

A checkpoint is a dict of plain Python types and tensors, so it loads with
`torch.load(path, weights_only=True)` (no pickled code runs). Writes go to a temp file
that is renamed into place: an interrupted save never destroys the previous file.
`models/model_index.json` lists every saved model.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from . import __version__
from .config import LevelConfig, get_level
from .model import TinyGPT
from .paths import MODELS_DIR, atomic_write
from .tokenizer import Vocab

FORMAT_VERSION = 1
INDEX_FILE = "model_index.json"


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

def read_index(models_dir: Path | str = MODELS_DIR) -> dict:
    path = Path(models_dir) / INDEX_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"models": {}}
    except (json.JSONDecodeError, UnicodeDecodeError):
        # The index is a convenience rebuilt from the checkpoints; never let it block work.
        return rebuild_index(models_dir)


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
    index = read_index(path.parent)
    index["models"][path.name] = _index_entry(path, config, model.num_params(), history, data_stats)
    _write_index(index, path.parent)


def rebuild_index(models_dir: Path | str = MODELS_DIR) -> dict:
    """Recreate model_index.json from the checkpoints in the folder (skipping broken ones)."""
    models_dir = Path(models_dir)
    index = {"models": {}}
    for path in sorted(models_dir.glob("*.pt")):
        if path.name.endswith(".resume.pt"):
            continue
        try:
            ckpt = read_checkpoint(path)
            model, config, _ = model_from_checkpoint(ckpt, path)
        except CheckpointError:
            continue
        index["models"][path.name] = _index_entry(path, config, model.num_params(),
                                                  ckpt.get("history") or {}, ckpt.get("data_stats") or {})
    if models_dir.is_dir():
        _write_index(index, models_dir)
    return index
